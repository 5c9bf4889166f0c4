"""``ovdistill predict`` writes what ``ovdistill evaluate`` reads, and ``evaluate`` then gives ``ovdistill test``'s
figures: segmentation PNGs named by image stem, a detection COCO results JSON; merged across DDP ranks."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from pipelines.cli import lightning_cli, main
from pipelines.evaluate.det_results import evaluate_detections
from pipelines.evaluate.seg_folders import evaluate_folders

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _config(task: str, method: str, world: Path, trunk: Path, root: Path) -> list[str]:
    weights = "encoder_weights" if task == "seg" else "weights"
    return ["-c", str(ROOT / f"configs/{task}/world.yaml"), "-c", str(ROOT / f"configs/{task}/method/{method}.yaml"),
            "--data.init_args.world", str(world), f"--model.init_args.student.init_args.{weights}", str(trunk),
            "--trainer.default_root_dir", str(root), *QUIET]


def _fit_then_test(args: list[str], root: Path, steps: int) -> tuple[Path, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", *args, "--trainer.max_steps", str(steps), "--trainer.limit_val_batches", "0",
                     "--data.init_args.batch_size", "4"]) == 0
        ckpt = next(root.rglob("last.ckpt"))
        cli = lightning_cli(["test", *args, "--ckpt_path", str(ckpt)])
    return ckpt, {k: float(v) for k, v in cli.trainer.callback_metrics.items()}


@pytest.mark.parametrize("img_scale", [None, "[48, 48]"])
def test_seg_predict_writes_pngs_that_evaluate_scores_as_test_does(img_scale, tiny_world, tmp_path):
    # training-free MaskCLIP: the teacher's own map, different in every image (a barely trained student's could
    # name every pixel background, and then a PNG written under another image's name would score the same).
    # img_scale: the real presets' evaluation view, which resizes the image (not the label) inside a wrapper dataset
    args = ["-c", str(ROOT / "configs/seg/world.yaml"), "-c", str(ROOT / "configs/seg/method/maskclip.yaml"),
            "--data.init_args.world", str(tiny_world), "--trainer.default_root_dir", str(tmp_path / "run"), *QUIET]
    if img_scale:
        args += ["--data.init_args.img_scale", img_scale, "--data.init_args.eval_batch_size", "1"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tested = {k: float(v) for k, v in lightning_cli(["test", *args]).trainer.callback_metrics.items()}
        out = tmp_path / "preds"
        assert main(["predict", *args, "--predictions.output_dir", str(out)]) == 0
    stems = sorted(p.stem for p in (tiny_world / "images/test").iterdir())
    assert sorted(p.stem for p in out.glob("*.png")) == stems
    scored = evaluate_folders(tiny_world / "labels/test", out, "world").metrics
    assert tested["test/mIoU_seen"] > 0 and tested["test/mIoU_unseen"] > 0
    for key in ("mIoU", "mIoU_seen", "mIoU_unseen"):
        assert scored[key] == pytest.approx(tested[f"test/{key}"], abs=1e-4), key


def test_predict_on_the_val_split_scores_as_validate_does(tiny_world, tmp_path):
    """``--predictions.split val``: settings are chosen on val, so its predictions can be written and scored too."""
    args = ["-c", str(ROOT / "configs/seg/world.yaml"), "-c", str(ROOT / "configs/seg/method/maskclip.yaml"),
            "--data.init_args.world", str(tiny_world), "--trainer.default_root_dir", str(tmp_path / "run"), *QUIET]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        validated = {k: float(v) for k, v in lightning_cli(["validate", *args]).trainer.callback_metrics.items()}
        out = tmp_path / "preds"
        assert main(["predict", *args, "--predictions.output_dir", str(out), "--predictions.split", "val"]) == 0
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(p.stem for p in (tiny_world / "images/val").iterdir())
    scored = evaluate_folders(tiny_world / "labels/val", out, "world").metrics
    for key in ("mIoU", "mIoU_seen", "mIoU_unseen"):
        assert scored[key] == pytest.approx(validated[f"val/{key}"], abs=1e-4), key
    with pytest.raises(SystemExit):  # a typo is refused at parse time, with the allowed values
        main(["predict", *args, "--predictions.output_dir", str(out), "--predictions.split", "train"])


@pytest.mark.slow
def test_det_predict_writes_coco_results_that_evaluate_scores_as_test_does(tiny_world, tmp_path):
    trunk = tmp_path / "trunk.pt"
    assert main(["teacher-trunk", "--layout", "timm", "--out", str(trunk)]) == 0
    args = _config("det", "vild_text", tiny_world, trunk, tmp_path / "run")
    ckpt, tested = _fit_then_test(args, tmp_path / "run", 20)
    out = tmp_path / "preds"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["predict", *args, "--ckpt_path", str(ckpt), "--predictions.output_dir", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    gt = json.loads((tiny_world / "annotations/instances_test.json").read_text())
    assert {r["image_id"] for r in results} <= {i["id"] for i in gt["images"]}
    assert {r["category_id"] for r in results} <= {c["id"] for c in gt["categories"]}
    scored = evaluate_detections(tiny_world / "annotations/instances_test.json", out / "results.json", "world").metrics
    assert tested["test/AP50"] > 0
    for key in ("AP", "AP50", "AP50_base", "AP50_novel"):
        assert scored[key] == pytest.approx(tested[f"test/{key}"], abs=1e-3), key

    # the same pass on 2 DDP processes (gloo): each rank writes its part, rank 0 merges them and removes the parts
    exe = shutil.which("ovdistill") or str(Path(sys.executable).parent / "ovdistill")
    ddp = tmp_path / "ddp"
    proc = subprocess.run([exe, "predict", *args, "--ckpt_path", str(ckpt), "--predictions.output_dir", str(ddp),
                           "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in ddp.iterdir()) == ["results.json"]
    merged = json.loads((ddp / "results.json").read_text())
    assert len(merged) == len(results)
    assert evaluate_detections(tiny_world / "annotations/instances_test.json", ddp / "results.json", "world").metrics["AP50"] == \
        pytest.approx(scored["AP50"], abs=1e-3)
