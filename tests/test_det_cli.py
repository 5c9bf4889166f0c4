"""The documented detection workflow through the command line, on a tiny world with the world configs:
fit ViLD-text -> ``ovdistill proposals`` -> fit ViLD -> ``ovdistill pseudo-label`` -> fit pseudo-box."""
from __future__ import annotations

import json
import warnings

import pytest
import torch

from pipelines.cli import main
from pipelines.proposals import load_proposals

FAST = ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.logger", "false", "--data.init_args.batch_size", "4"]


def _fit(cfg, world, trunk, out, extra=()):
    args = ["fit", "-c", cfg, "--data.init_args.world", str(world), "--model.init_args.student.init_args.weights", str(trunk),
            "--trainer.default_root_dir", str(out), *FAST, *extra]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main(args)
    ckpts = sorted(out.rglob("last.ckpt"))
    assert ckpts, f"no checkpoint under {out}"
    return ckpts[-1]


@pytest.mark.slow
def test_detection_workflow_from_the_command_line(tiny_world, tmp_path):
    trunk = tmp_path / "trunk.pt"
    assert main(["teacher-trunk", "--layout", "timm", "--out", str(trunk)]) == 0
    base_cfg = "configs/det/vild_text_world.yaml"
    common = ["-c", base_cfg, "--data.init_args.world", str(tiny_world), "--model.init_args.student.init_args.weights", str(trunk)]
    ckpt = _fit(base_cfg, tiny_world, trunk, tmp_path / "base")
    assert "teacher.model" not in " ".join(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"])

    props = tmp_path / "props.pt"
    assert main(["proposals", *common, "--ckpt", str(ckpt), "--out", str(props), "--top-n", "8"]) == 0
    table = load_proposals(props)
    train_ids = {i["id"] for i in json.loads((tiny_world / "annotations/instances_train.json").read_text())["images"]}
    assert set(table["proposals"]) == train_ids and "teacher_regions" in table
    _fit("configs/det/vild_world.yaml", tiny_world, trunk, tmp_path / "vild", ["--data.init_args.proposals", str(props), "--model.init_args.image_regions", "8"])

    pseudo = tmp_path / "pseudo.json"
    assert main(["pseudo-label", *common, "--ckpt", str(ckpt), "--out", str(pseudo), "--threshold", "0.0"]) == 0
    coco = json.loads(pseudo.read_text())
    split = json.loads((tiny_world / "split.json").read_text())
    assert {c["name"] for c in coco["categories"]} == set(split["novel"])
    assert coco["annotations"], "threshold 0 must keep some pseudo boxes"
    _fit("configs/det/pseudo_box_world.yaml", tiny_world, trunk, tmp_path / "pseudo", ["--data.init_args.pseudo_labels", str(pseudo)])
