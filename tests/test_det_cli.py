"""The documented detection workflow through the command line, on a tiny world with the composed world configs:
fit ViLD-text -> ``ovdistill proposals`` -> fit ViLD -> ``ovdistill pseudo-label`` -> fit pseudo-box ->
``ovdistill pseudo-label --labeller detector`` (round 2)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from pipelines.cli import main
from pipelines.data.proposals_file import load_proposals

FAST = ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.logger", "false", "--data.init_args.batch_size", "4"]
BASE = "configs/det/world.yaml"


def _fit(method, world, trunk, out, extra=()):
    args = ["fit", "-c", BASE, "-c", f"configs/det/method/{method}.yaml", "--data.init_args.world", str(world),
            "--model.init_args.student.init_args.weights", str(trunk), "--trainer.default_root_dir", str(out), *FAST, *extra]
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
    common = ["-c", BASE, "-c", "configs/det/method/vild_text.yaml", "--data.init_args.world", str(tiny_world),
              "--model.init_args.student.init_args.weights", str(trunk), "--trainer.logger", "false"]
    ckpt = _fit("vild_text", tiny_world, trunk, tmp_path / "base")
    assert "teacher.model" not in " ".join(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"])

    props = tmp_path / "props.pt"
    assert main(["proposals", *common, "--ckpt", str(ckpt), "--out", str(props), "--top-n", "8"]) == 0
    table = load_proposals(props)
    train_ids = {i["id"] for i in json.loads((tiny_world / "annotations/instances_train.json").read_text())["images"]}
    assert set(table["proposals"]) == train_ids and "teacher_regions" in table
    assert not list(tmp_path.glob(".props.pt*")), "no temporary part left behind"
    # the same step through Trainer.predict on 2 DDP processes (gloo): each rank its shard, rank 0 merges
    exe = shutil.which("ovdistill") or str(Path(sys.executable).parent / "ovdistill")
    props2 = tmp_path / "props_ddp.pt"
    proc = subprocess.run(
        [exe, "proposals", *common, "--ckpt", str(ckpt), "--out", str(props2), "--top-n", "8", "--trainer.accelerator", "cpu",
         "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.enable_progress_bar", "false"],
        capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = load_proposals(props2)
    assert set(ddp["proposals"]) == train_ids and not list(tmp_path.glob(".props_ddp.pt*"))
    for i in train_ids:
        assert torch.allclose(ddp["proposals"][i], table["proposals"][i], atol=1e-3)
        assert torch.allclose(ddp["teacher_regions"][i], table["teacher_regions"][i], atol=2e-3)
    _fit("vild", tiny_world, trunk, tmp_path / "vild", ["--data.init_args.proposals", str(props)])

    pseudo = tmp_path / "pseudo.json"
    assert main(["pseudo-label", *common, "--ckpt", str(ckpt), "--out", str(pseudo), "--threshold", "0.0"]) == 0
    coco = json.loads(pseudo.read_text())
    split = json.loads((tiny_world / "split.json").read_text())
    gt = json.loads((tiny_world / "annotations/instances_train.json").read_text())
    assert {c["name"] for c in coco["categories"]} == set(split["novel"])
    gt_ids = {c["name"]: c["id"] for c in gt["categories"]}
    assert all(c["id"] == gt_ids[c["name"]] for c in coco["categories"])
    assert coco["annotations"], "threshold 0 must keep some pseudo boxes"
    assert coco["info"]["ovdistill"]["round"] == 1
    assert coco["info"]["ovdistill"]["refine"] is True  # live round one moves proposals by the box regression
    # round one from the proposals file: stored boxes and teacher regions, no proposer or teacher forward
    live8, stored8 = tmp_path / "live8.json", tmp_path / "stored8.json"
    for out, extra in ((live8, ["--no-refine"]), (stored8, ["--proposals", str(props)])):
        assert main(["pseudo-label", *common, "--ckpt", str(ckpt), "--out", str(out), "--threshold", "0.0", "--top-proposals", "8", *extra]) == 0
    a, b = (sorted((x["image_id"], x["category_id"], tuple(round(v) for v in x["bbox"])) for x in json.loads(f.read_text())["annotations"])
            for f in (live8, stored8))
    assert a and len(a) == len(b) and len(set(a) & set(b)) >= 0.9 * len(a)
    pseudo_ckpt = _fit("pseudo_box", tiny_world, trunk, tmp_path / "pseudo", ["--data.init_args.pseudo_labels", str(pseudo)])

    round2 = tmp_path / "round2.json"
    pseudo_cfg = ["-c", BASE, "-c", "configs/det/method/pseudo_box.yaml", "--data.init_args.world", str(tiny_world),
                  "--data.init_args.pseudo_labels", str(pseudo), "--model.init_args.student.init_args.weights", str(trunk),
                  "--trainer.logger", "false"]
    assert main(["pseudo-label", *pseudo_cfg, "--labeller", "detector", "--ckpt", str(pseudo_ckpt), "--out", str(round2),
                 "--threshold", "0.0"]) == 0
    info = json.loads(round2.read_text())["info"]["ovdistill"]
    assert info["round"] == 2 and info["labeller"].startswith("PseudoBoxDetector")
