"""Bad input and faults: each case is a clear error naming the file / value (or correct behaviour), and nothing
already written is modified by a failed run."""
from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from conftest import TINY_RN, make_teacher, tiny_segmenter

from distill.det_modules import ViLD
from distill.seg_modules import LSeg


class Payload:
    """Pickles to a call that would leave a marker file if it ever ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_pickled_payload_in_a_checkpoint_never_runs(tmp_path):
    from pipelines.offline.checkpoint import read_checkpoint

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": Payload(str(marker))}, evil)
    with pytest.raises(ValueError, match=r"refusing checkpoint .*evil.ckpt: it holds pickled objects"):
        read_checkpoint(evil)
    assert not marker.exists()
    # Lightning's own loading (ovdistill test --ckpt_path) is weights_only as well: torch's unpickler refuses the payload
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        from lightning.fabric.utilities.cloud_io import _load

        _load(evil, weights_only=None)
    assert not marker.exists()
    plain = tmp_path / "plain.pt"
    torch.save({"conv.weight": torch.zeros(1)}, plain)
    with pytest.raises(ValueError, match=r"plain.pt is not a Lightning checkpoint of an ovdistill method \(no 'state_dict'"):
        read_checkpoint(plain)


def test_checkpoint_of_another_teacher_vocabulary_or_task_is_refused():
    a, b = make_teacher("ckpt-a", TINY_RN, seed=0), make_teacher("ckpt-b", TINY_RN, seed=1)
    names = ["background", "circle", "star"]
    module = LSeg(a, tiny_segmenter(a.embed_dim), class_names=names, unseen=["star"])
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    assert not [k for k in ckpt["state_dict"] if k.startswith("teacher.")]
    with pytest.raises(ValueError, match=r"distilled from teacher 'ckpt-a@random-\w+' but this run's teacher is 'ckpt-b@"):
        LSeg(b, tiny_segmenter(b.embed_dim), class_names=names, unseen=["star"]).on_load_checkpoint(dict(ckpt))
    with pytest.raises(ValueError, match="order the classes differently"):
        LSeg(a, tiny_segmenter(a.embed_dim), class_names=["circle", "background", "star"], unseen=["star"]).on_load_checkpoint(dict(ckpt))
    det = ViLD(a, None, class_names=names, novel=["star"])
    with pytest.raises(ValueError, match="holds a segmentation model .*ViLD is a detection method"):
        det.on_load_checkpoint(dict(ckpt))
    with pytest.raises(ValueError, match="not a Lightning checkpoint"):
        module.on_load_checkpoint({"conv.weight": torch.zeros(1)})
    fresh = LSeg(a, tiny_segmenter(a.embed_dim, seed=5), class_names=names, unseen=["star"])
    state = dict(ckpt)
    state["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if "decoder" not in k}
    fresh.on_load_checkpoint(state)
    with pytest.raises(RuntimeError, match="Missing key"):  # strict: only the teacher may be absent
        fresh.load_state_dict(state["state_dict"], strict=True)


def test_nan_images_and_boxes_are_refused(rn_teacher):
    images = torch.rand(1, 3, 32, 32)
    images[0, 1, 3, 4] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite value .* at index \[0, 1, 3, 4\]"):
        rn_teacher.encode_image(images)
    with pytest.raises(ValueError, match="non-finite"):
        rn_teacher.encode_dense(images)
    with pytest.raises(ValueError, match=r"boxes\[0\]\[1\] = \[.*nan.*\] is not finite"):
        rn_teacher.encode_regions(torch.rand(1, 3, 32, 32), [torch.tensor([[0.0, 0, 5, 5], [1, float("nan"), 6, 6]])])


def test_world_spec_refusals(tmp_path, monkeypatch):
    from pipelines.commands.world import main as world_main

    assert world_main(["--out", str(tmp_path / "w"), "--classes", "circle", "circle", "square", "--novel", "square"]) == 2
    assert world_main(["--out", str(tmp_path / "w"), "--novel", "star", "star"]) == 2
    monkeypatch.chdir(tmp_path)
    assert world_main(["--out", ".", "--train", "1", "--val", "1", "--test", "1"]) == 2
    assert not (tmp_path / "images").exists()


def test_a_training_split_smaller_than_a_batch_is_an_error(tiny_world):
    from pipelines.data.det_datamodule import WorldDetDataModule
    from pipelines.data.seg_datamodule import WorldSegDataModule

    with pytest.raises(ValueError, match=r"training split has 16 images but one step needs batch_size=32"):
        WorldSegDataModule(str(tiny_world), batch_size=32).train_dataloader()
    with pytest.raises(ValueError, match=r"training split has 16 images but one step needs batch_size=17"):
        WorldDetDataModule(str(tiny_world), batch_size=17).train_dataloader()


def test_ckpt_path_last_without_a_checkpoint_is_an_error(tiny_world, tmp_path, monkeypatch):
    from pipelines.cli import main

    trunk = tmp_path / "trunk.pt"
    assert main(["teacher-trunk", "--out", str(trunk)]) == 0
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="--ckpt_path last found no last.ckpt"):
        main(["test", "-c", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "configs/seg/world.yaml")),
              "-c", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "configs/seg/method/lseg.yaml")),
              "--data.init_args.world", str(tiny_world), "--model.init_args.student.init_args.encoder_weights", str(trunk),
              "--trainer.logger", "false", "--ckpt_path", "last"])


def test_pretrain_recipe_change_on_resume_is_refused(tmp_path):
    from pipelines.world.pretrain_run import check_resume_recipe

    recipe = {"steps": 10, "batch_size": 16, "lr": 1e-3, "seed": 0, "curriculum_steps": 3}
    check_resume_recipe(tmp_path, recipe, resuming=False)
    check_resume_recipe(tmp_path, {**recipe, "steps": 20}, resuming=True)  # more steps: training continues
    with pytest.raises(ValueError, match=r"another recipe \(lr: 0.001 -> 0.01\)"):
        check_resume_recipe(tmp_path, {**recipe, "steps": 20, "lr": 1e-2}, resuming=True)
    with pytest.raises(ValueError, match=r"steps: 20 -> 5"):
        check_resume_recipe(tmp_path, {**recipe, "steps": 5}, resuming=True)


def test_proposals_of_other_images_are_refused(tiny_world, tmp_path):
    from pipelines.data.det_datamodule import WorldDetDataModule
    from pipelines.data.proposals_file import load_proposals, pack_proposals, save_proposals

    ids = [i["id"] for i in json.loads((tiny_world / "annotations/instances_train.json").read_text())["images"]]
    items = [{"image_id": i, "boxes": torch.tensor([[1.0, 1, 10, 10]]), "objectness": torch.ones(1)} for i in ids]
    other = save_proposals(pack_proposals(items, None, (1.0,), "0123456789abcdef"), tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"computed on another annotation file .* \(fingerprint 0123456789abcdef vs"):
        WorldDetDataModule(str(tiny_world), proposals=str(other)).dataset("train")
    items[0]["boxes"] = torch.tensor([[1.0, 1, 500, 10]])
    outside = save_proposals(pack_proposals(items, None, (1.0,), ""), tmp_path / "outside.pt")
    with pytest.raises(ValueError, match=rf"boxes of image {ids[0]} reach .* outside its size 64x64"):
        WorldDetDataModule(str(tiny_world), proposals=str(outside)).dataset("train")
    assert set(load_proposals(outside)["proposals"]) == set(ids)


def test_failed_writes_leave_earlier_files_intact_and_stale_temps_are_cleaned(tmp_path):
    from pipelines.data.atomic import save_json

    target = tmp_path / "pseudo.json"
    save_json({"round": 1}, target)
    before = target.read_bytes()
    with pytest.raises(TypeError):
        save_json({"round": object()}, target)  # fails half-way through serialising
    assert target.read_bytes() == before and not list(tmp_path.glob(".pseudo.json.*"))
    (tmp_path / ".pseudo.json.killed.tmp").write_text("half")  # what SIGKILL leaves
    save_json({"round": 2}, target)
    assert json.loads(target.read_text()) == {"round": 2} and not list(tmp_path.glob(".pseudo.json.*"))
