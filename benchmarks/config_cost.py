"""What a shipped real-data config costs at its own sizes: seconds per training step and peak RSS of `ovdistill fit`.

    python benchmarks/config_cost.py [--steps 3] [--device cpu|gpu] [--precision P] [--combos seg-voc20-maskclip_plus det-ov_coco-vild_text]

Random weights in the configs' architectures (saved to local files) and random images in the real on-disk
layouts at the datasets' usual sizes (VOC ~500x375, COCO 640x480), so it runs offline. Each combination is fit
for ``--steps`` steps in a fresh process; ``pipelines.bench.step_timer.StepTimer`` records every step, and the
table gives the median after the first (start-up and the text-embedding pass excluded). Prints a markdown table.
On a GPU the configs' own strategy (DDP, NCCL, one process), precision (16-mixed unless ``--precision``) and
data workers are used, and the table adds the peak GPU memory allocated.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def _weights(tmp: Path) -> dict[str, Path]:
    import torchvision

    from teachers import OpenCLIPTeacher

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("ViT-B-16-quickgelu", "ViT-B-32-quickgelu"):
            out[name] = tmp / f"{name}.pt"
            torch.save(OpenCLIPTeacher(name, None).model.state_dict(), out[name])
    for name in ("resnet101", "resnet50"):
        out[name] = tmp / f"{name}.pth"
        torch.save(getattr(torchvision.models, name)().state_dict(), out[name])
    return out


def _voc(root: Path, n: int = 16) -> Path:
    rng = np.random.default_rng(0)
    voc = root / "VOCdevkit" / "VOC2012"
    stems = [f"2007_{i:06d}" for i in range(n)]
    for folder in ("JPEGImages", "SegmentationClassAug", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    for stem in stems:
        Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)).save(voc / "JPEGImages" / f"{stem}.jpg")
        lab = rng.integers(0, 21, (375, 500), dtype=np.uint8)
        for folder in ("SegmentationClassAug", "SegmentationClass"):
            Image.fromarray(lab, "L").save(voc / folder / f"{stem}.png")
    for name in ("train_aug.txt", "val.txt"):
        (voc / "ImageSets/Segmentation" / name).write_text("\n".join(stems) + "\n")
    return voc


def _coco(root: Path, n: int = 16) -> Path:
    from pipelines.data.seg_presets import COCO_STUFF_CLASSES

    rng = np.random.default_rng(1)
    ids = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37,
           38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73,
           74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90]
    cats = [{"id": i, "name": c} for i, c in zip(ids, COCO_STUFF_CLASSES[:80], strict=True)]
    coco = root / "coco"
    (coco / "annotations").mkdir(parents=True, exist_ok=True)
    for split in ("train2017", "val2017"):
        (coco / split).mkdir(exist_ok=True)
        images, anns = [], []
        for i in range(n):
            name = f"{i + 1:012d}.jpg"
            Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(coco / split / name)
            images.append({"id": i + 1, "file_name": name, "height": 480, "width": 640})
            for k in range(5):
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": ids[k * 7], "bbox": [50.0 * k, 40.0, 120.0, 90.0],
                             "area": 10800.0, "iscrowd": 0})
        (coco / "annotations" / f"instances_{split}.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return coco


def _fit(args: list[str], steps: int, root: Path) -> tuple[float, float, float, float | None]:
    """(median seconds per training step after the first, wall seconds of the whole command, peak RSS GB, peak GPU GB)."""
    timer = root / "steps.json"
    cmd = [sys.executable, "-m", "pipelines.cli", "fit", *args, "--trainer.max_steps", str(steps), "--trainer.limit_val_batches", "0",
           "--trainer.logger", "false", "--trainer.enable_checkpointing", "false", "--trainer.callbacks", "[]",
           "--trainer.callbacks+=pipelines.bench.step_timer.StepTimer", "--trainer.callbacks.out", str(timer),
           "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root)]
    root.mkdir(parents=True, exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        killed = " (killed: out of memory?)" if proc.returncode in (-9, 137) else ""
        raise RuntimeError(f"exit {proc.returncode}{killed}: {proc.stderr[-1500:]}")
    rss = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 2**20
    record = json.loads(timer.read_text())
    times = record["step_seconds"]
    return float(np.median(times[1:] or times)), wall, rss, record.get("gpu_peak_gb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--precision", default=None, help="trainer precision (default: 32-true on cpu, the config's on gpu)")
    parser.add_argument("--combos", nargs="*", default=["seg-voc20-maskclip_plus", "det-ov_coco-vild_text"])
    parser.add_argument("--batch", type=int, default=None, help="override the configs' batch size (8 seg, 4 det)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ovdistill-cost-"))
    weights = _weights(tmp)
    rows = []
    for combo in args.combos:
        task, data, method = combo.split("-")
        cfg = ["-c", f"configs/{task}/real.yaml", "-c", f"configs/{task}/data/{data}.yaml", "-c", f"configs/{task}/method/{method}.yaml"]
        device = ["--trainer.accelerator", args.device, "--trainer.devices", "1"]
        workers = []
        if args.device == "cpu":
            device += ["--trainer.strategy", "auto", "--trainer.precision", args.precision or "32-true"]
            workers = ["--data.init_args.num_workers", "0"]
        elif args.precision:
            device += ["--trainer.precision", args.precision]
        if task == "seg":
            over = ["--model.init_args.teacher.init_args.pretrained", str(weights["ViT-B-16-quickgelu"]),
                    "--model.init_args.student.init_args.encoder_weights", str(weights["resnet101"]),
                    "--data.init_args.root", str(_voc(tmp / "voc")), *workers]
            batch = args.batch or 8
        else:
            over = ["--model.init_args.teacher.init_args.pretrained", str(weights["ViT-B-32-quickgelu"]),
                    "--model.init_args.student.init_args.weights", str(weights["resnet50"]),
                    "--data.init_args.root", str(_coco(tmp / "coco")), *workers]
            batch = args.batch or 4
        full = [*cfg, *device, *over, "--data.init_args.batch_size", str(batch)]
        per_step, wall, rss, gpu = _fit(full, args.steps, tmp / combo)
        rows.append((combo, batch, per_step, per_step / batch * 1000 / 3600, wall, rss, gpu))
        print(f"{combo}: {per_step:.3f} s/step", file=sys.stderr)
    where = torch.cuda.get_device_name() if args.device == "gpu" else f"cpu, {os.cpu_count()} cores"
    print(f"\n| config ({where}, {args.precision or ('32-true' if args.device == 'cpu' else 'config precision')}) | batch "
          "| s / step | h / 1k images | command wall s | peak RSS GB | peak GPU GB |")
    print("|---|---|---|---|---|---|---|")
    for combo, batch, step, hours, wall, rss, gpu in rows:
        print(f"| {combo} | {batch} | {step:.3f} | {hours:.3f} | {wall:.0f} | {rss:.1f} | {'-' if gpu is None else f'{gpu:.1f}'} |")


if __name__ == "__main__":
    main()
