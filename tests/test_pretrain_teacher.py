"""Embedded-teacher pre-training: export round trip, resumption, and the shipped teacher's quality bar."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch

from pipelines.world import SHAPES
from pipelines.world.pretrain_data import CaptionedScenes, collate_captions
from pipelines.world.pretrain_run import pretrain_teacher
from pipelines.world.teacher import (
    load_shipped_teacher,
    load_teacher_dir,
    shipped_teacher_available,
)
from pipelines.world.zeroshot import CROP_PROTOCOLS, crop_accuracy

#: the shipped teacher's crop bars: tight 1.0x crops (mean, worst class) and ViLD's 1x + 1.5x average
TIGHT_BAR, VILD_BAR = (85.0, 60.0), 90.0


def test_groups_differ_only_in_shape_words():
    ds = CaptionedScenes(length=16, image_size=48, seed=1, group_size=4)
    images, captions = collate_captions([ds[0]])
    assert images.shape == (4, 3, 48, 48) and len(captions) == 4
    shapes = [next(s for s in SHAPES if s in c) for c in captions]
    assert len(set(shapes)) == 4
    stripped = {c.replace(s, "X") for c, s in zip(captions, shapes, strict=True)}
    assert len(stripped) == 1, captions
    # the background (top-left corner, which no object reaches) is identical across the group
    assert torch.equal(images[:, :, :3, :3], images[:1, :, :3, :3].expand(4, -1, -1, -1))


def test_export_round_trips_and_training_resumes(tmp_path):
    out = pretrain_teacher(tmp_path, steps=2, batch_size=16, eval_per_class=1, progress=False, num_workers=0, half=False, curriculum_steps=0)
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2
    teacher, meta = load_teacher_dir(out)
    assert meta["recipe"]["steps"] == 2
    trained = {k[len("model.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    for k, v in teacher.model.state_dict().items():
        assert torch.equal(v, trained[k]), k
    # a second run with more steps continues from last.ckpt instead of starting again
    pretrain_teacher(tmp_path, steps=4, batch_size=16, eval_per_class=1, progress=False, num_workers=0, curriculum_steps=0)
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 4
    assert json.loads((out / "teacher.json").read_text())["recipe"]["steps"] == 4


def test_another_architecture_trains_by_the_same_recipe_and_loads_from_its_record(tmp_path):
    from conftest import TEXT_CFG

    cfg = {"embed_dim": 24, "vision_cfg": {"image_size": 32, "timm_model_name": "resnet18", "timm_pool": "avg", "timm_proj": "linear"},
           "text_cfg": TEXT_CFG}
    out = pretrain_teacher(tmp_path, steps=1, batch_size=16, eval_per_class=1, progress=False, num_workers=0, half=False,
                           curriculum_steps=0, model_name="probe-r18", model_cfg=cfg)
    teacher, meta = load_teacher_dir(out)
    assert (meta["model_name"], meta["model_cfg"]) == ("probe-r18", cfg)
    assert "--model-name probe-r18 --model-cfg THIS_FILE " in meta["command"]  # the record reproduces itself
    assert len(teacher.model.visual.trunk.layer1) == 2 and teacher.embed_dim == 24  # resnet18, not the default resnet10t
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    trained = {k[len("model.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    assert trained.keys() == teacher.model.state_dict().keys()
    for k, v in teacher.model.state_dict().items():
        assert torch.equal(v, trained[k]), k
    with pytest.raises(ValueError, match="its own model_name"):
        pretrain_teacher(tmp_path / "same-name", steps=1, model_cfg=cfg)
    assert not (tmp_path / "same-name").exists()  # refused before anything is written


def test_the_command_line_trains_another_architecture_from_a_config_or_a_teacher_record(tmp_path):
    from conftest import TEXT_CFG

    from pipelines.commands.teacher import main

    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "timm_model_name": "resnet18", "timm_pool": "avg", "timm_proj": "linear"},
           "text_cfg": TEXT_CFG}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    recipe = ["--steps", "1", "--batch-size", "16", "--model-name", "cli-r18"]
    assert main(["--out", str(tmp_path / "a"), *recipe, "--model-cfg", str(tmp_path / "cfg.json")]) == 0
    meta = json.loads((tmp_path / "a" / "teacher.json").read_text())
    assert (meta["model_name"], meta["model_cfg"]) == ("cli-r18", cfg)
    # the record's command, with THIS_FILE the record itself, trains the same architecture again
    args = meta["command"].split()[2:]
    args = [str(tmp_path / "a" / "teacher.json") if a == "THIS_FILE" else str(tmp_path / "b") if a == "OUT" else a for a in args]
    assert main(args) == 0
    again = json.loads((tmp_path / "b" / "teacher.json").read_text())
    assert (again["model_name"], again["model_cfg"], again["recipe"]) == ("cli-r18", cfg, meta["recipe"])
    for bad, says in (("missing.json", "cannot read"), ("cfg_without_text.json", "text_cfg")):
        if bad.startswith("cfg"):
            (tmp_path / bad).write_text(json.dumps({k: v for k, v in cfg.items() if k != "text_cfg"}))
        with pytest.raises(SystemExit, match=says):
            main(["--out", str(tmp_path / "c"), *recipe, "--model-cfg", str(tmp_path / bad)])
    assert not (tmp_path / "c").exists()


def test_shipped_teacher_meets_zero_shot_bar():
    assert shipped_teacher_available(), "pipelines/assets/world_teacher.{pt,json} must ship with the package"
    teacher, meta = load_shipped_teacher()
    recorded = meta["zero_shot_crop_accuracy"]
    measured = {}
    for name, scales in CROP_PROTOCOLS:
        mean, per_class = crop_accuracy(teacher, SHAPES, per_class=40, scales=scales)
        # the export recorded every protocol on the same held-out crops: the shipped file reproduces them
        assert mean == pytest.approx(recorded[name]["mean"], abs=0.5), name
        measured[name] = (mean, min(per_class.values()))
    tight, context, vild = (measured[name] for name, _ in CROP_PROTOCOLS)
    assert tight[0] >= TIGHT_BAR[0] and tight[1] >= TIGHT_BAR[1], measured
    assert vild[0] >= VILD_BAR, measured
    assert context[0] >= 90.0 and context[1] >= 75.0, measured


def test_training_starts_from_a_teacher_through_a_dilated_trunk_and_exports_the_plain_tower(tmp_path):
    """``init_from`` + ``train_stride`` (the pooling probe's recipe, from the command line): the run starts from the
    exported weights (a zero learning rate leaves every learned weight as it was), the pool sees the dilated trunk's
    finer map during training, the export loads as open_clip builds the tower, and the record reproduces the run."""
    from conftest import TEXT_CFG
    from lightning.pytorch.callbacks import Callback

    from pipelines.commands.teacher import main

    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "timm_model_name": "resnet18", "timm_pool": "avg", "timm_proj": "linear"},
           "text_cfg": TEXT_CFG}
    base = pretrain_teacher(tmp_path / "base", steps=1, batch_size=16, eval_per_class=1, progress=False, num_workers=0, half=False,
                            curriculum_steps=0, model_name="init-r18", model_cfg=cfg)
    max_cfg = {**cfg, "vision_cfg": {**cfg["vision_cfg"], "timm_pool": "max"}}

    class TrainingMap(Callback):
        def on_train_start(self, trainer, module):
            with torch.no_grad():
                self.shape = tuple(module.model.visual.trunk.forward_features(torch.zeros(1, 3, 32, 32)).shape[-2:])
            self.pool = module.model.visual.trunk.global_pool.pool_type

    seen = TrainingMap()
    out = pretrain_teacher(tmp_path / "tuned", steps=1, batch_size=16, lr=0.0, eval_per_class=1, progress=False, num_workers=0,
                           half=False, model_name="init-r18-max", model_cfg=max_cfg, init_from=base, train_stride=8, callbacks=[seen])
    assert (seen.shape, seen.pool) == ((4, 4), "max")  # stride 8 on 32 px; stride 32 would be 1 x 1
    start, _ = load_teacher_dir(base)
    tuned, meta = load_teacher_dir(out)
    assert tuned.model.visual.trunk.global_pool.pool_type == "max"
    assert tuned.model.visual.trunk.forward_features(torch.zeros(1, 3, 32, 32)).shape[-2:] == (1, 1)  # exported plain
    learned = {k: v for k, v in start.model.state_dict().items() if "running_" not in k and "num_batches" not in k}
    for k, v in learned.items():
        assert torch.equal(tuned.model.state_dict()[k], v), k
    assert meta["recipe"]["init_from"] == str(base) and meta["recipe"]["train_stride"] == 8
    assert meta["recipe"]["curriculum_steps"] == 0  # a fine-tune has no single-object curriculum by default
    # the command names the start START; the record says which weights (SHA-256 of the file) and how they were made
    assert "--init-from START --train-stride 8" in meta["command"]
    start_meta = json.loads((base / "teacher.json").read_text())
    assert meta["starting_teacher"] == {"sha256": hashlib.sha256((base / "teacher.pt").read_bytes()).hexdigest(),
                                        "command": start_meta["command"], "recipe": start_meta["recipe"]}
    assert "starting_teacher" not in start_meta
    # a run without the new options records neither (earlier runs' recipes resume unchanged)
    assert "init_from" not in load_teacher_dir(base)[1]["recipe"] and "train_stride" not in load_teacher_dir(base)[1]["recipe"]
    # without a config of its own, a fine-tune keeps its start's architecture (max pool has no weights to refuse a mismatch by)
    again = pretrain_teacher(tmp_path / "again", steps=1, batch_size=16, lr=0.0, eval_per_class=1, progress=False, num_workers=0,
                             half=False, init_from=out)
    again_teacher, again_meta = load_teacher_dir(again)
    assert (again_meta["model_name"], again_meta["model_cfg"]) == ("init-r18-max", max_cfg)
    assert again_teacher.model.visual.trunk.global_pool.pool_type == "max"
    assert "--model-name init-r18-max --model-cfg THIS_FILE" in again_meta["command"]
    # refused before anything is written: another architecture's weights, a missing teacher, a tower that cannot dilate
    other = {**cfg, "embed_dim": 24}
    with pytest.raises(ValueError, match="another architecture"):
        pretrain_teacher(tmp_path / "other", steps=1, model_name="init-r18-24", model_cfg=other, init_from=base)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(SystemExit, match="no exported teacher weights"):
        main(["--out", str(tmp_path / "missing"), "--steps", "1", "--model-name", "init-r18", "--model-cfg", str(tmp_path / "cfg.json"),
              "--init-from", str(tmp_path / "nowhere")])
    from conftest import TINY_VIT
    with pytest.raises(ValueError, match="timm CNN image tower"):
        pretrain_teacher(tmp_path / "vit", steps=1, model_name="init-vit", model_cfg=TINY_VIT, train_stride=8)
    assert not any((tmp_path / d).exists() for d in ("other", "missing", "vit"))
