"""How fast ``ovdistill evaluate`` is next to the evaluators it wraps, on 5,000 synthetic images (same run).

    python benchmarks/evaluate_speed.py [--images 5000] [--size 128] [--workers 2]

- seg: a folder of ground-truth and predicted label PNGs (VOC's 20-class preset). ``evaluate_folders`` with
  0 and ``--workers`` decoding processes vs a plain loop (PIL decode + ``np.bincount`` confusion matrix):
  pixels per second and the ratio.
- det: a COCO ground truth (5,000 images, 1-6 boxes each) and a results file (jittered boxes + false
  positives). ``evaluate_detections`` vs pycocotools' and faster-coco-eval's ``COCOeval`` run directly
  (load, evaluate, accumulate, summarize): wall seconds and the ratio.

Prints one markdown table per task.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.data.seg_presets import get_preset
from pipelines.evaluate.det_results import evaluate_detections
from pipelines.evaluate.seg_folders import evaluate_folders


def write_seg(root: Path, n: int, size: int, k: int) -> None:
    rng = np.random.default_rng(0)
    for d in ("gt", "pred"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        gt = rng.integers(0, k + 1, (size // 8, size // 8)).astype(np.uint8).repeat(8, 0).repeat(8, 1)
        pred = np.where(rng.random(gt.shape) < 0.7, np.clip(gt.astype(int) - 1, 0, k - 1), rng.integers(0, k, gt.shape)).astype(np.uint8)
        Image.fromarray(gt).save(root / "gt" / f"{i:06d}.png")
        Image.fromarray(pred).save(root / "pred" / f"{i:06d}.png")


def plain_loop(root: Path, k: int) -> float:
    conf = np.zeros(k * k, np.int64)
    for p in sorted((root / "gt").glob("*.png")):
        gt = np.asarray(Image.open(p)).astype(np.int64)
        pred = np.asarray(Image.open(root / "pred" / p.name)).astype(np.int64)
        keep = gt > 0
        conf += np.bincount((gt[keep] - 1) * k + pred[keep], minlength=k * k)
    c = conf.reshape(k, k)
    inter = np.diag(c)
    return float(np.nanmean(inter / (c.sum(0) + c.sum(1) - inter)))


def write_det(root: Path, n: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    cats = [{"id": i + 1, "name": f"class{i}"} for i in range(20)]
    images, anns, dets = [], [], []
    for i in range(n):
        images.append({"id": i + 1, "width": 128, "height": 128, "file_name": f"{i}.png"})
        for _ in range(int(rng.integers(1, 7))):
            x, y, w, h = (float(v) for v in (*rng.integers(0, 90, 2), *rng.integers(8, 38, 2)))
            c = int(rng.integers(1, 21))
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": c, "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
            dets.append({"image_id": i + 1, "category_id": c if rng.random() < 0.8 else int(rng.integers(1, 21)),
                         "bbox": [x + rng.normal(0, 2), y + rng.normal(0, 2), w, h], "score": float(rng.random())})
        for _ in range(3):
            dets.append({"image_id": i + 1, "category_id": int(rng.integers(1, 21)), "score": float(rng.random()) * 0.5,
                         "bbox": [float(v) for v in (*rng.integers(0, 100, 2), 16, 16)]})
    gt, dt = root / "gt.json", root / "dt.json"
    gt.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    dt.write_text(json.dumps(dets))
    (root / "novel.txt").write_text("\n".join(c["name"] for c in cats[15:]))
    return gt, dt


def direct(gt: Path, dt: Path, backend: str) -> float:
    from distill.metrics.detection import coco_api

    COCO, COCOeval = coco_api(backend)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt))
        ev = COCOeval(coco, coco.loadRes(json.loads(dt.read_text())), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    k = len(get_preset("voc20").names)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_seg(root / "seg", args.images, args.size, k)
        pixels = args.images * args.size * args.size
        base_s, _ = timed(lambda: plain_loop(root / "seg", k))
        print(f"\nseg: {args.images} label pairs of {args.size}x{args.size} (voc20)\n")
        print("| evaluator | seconds | Mpixels/s | vs plain loop |\n|---|---|---|---|")
        print(f"| plain loop (PIL + np.bincount) | {base_s:.1f} | {pixels / base_s / 1e6:.1f} | 1.00 |")
        for workers in sorted({0, args.workers}):
            s, _ = timed(lambda w=workers: evaluate_folders(root / "seg" / "gt", root / "seg" / "pred", "voc20", workers=w))
            print(f"| ovdistill evaluate seg --workers {workers} | {s:.1f} | {pixels / s / 1e6:.1f} | {base_s / s:.2f} |")

        gt, dt = write_det(root, args.images)
        print(f"\ndet: {args.images} images, {len(json.loads(dt.read_text()))} detections, 20 classes\n")
        print("| evaluator | seconds | vs pycocotools direct |\n|---|---|---|")
        ref_s, _ = timed(lambda: direct(gt, dt, "pycocotools"))
        print(f"| pycocotools COCOeval direct | {ref_s:.1f} | 1.00 |")
        s, _ = timed(lambda: direct(gt, dt, "faster_coco_eval"))
        print(f"| faster-coco-eval direct | {s:.1f} | {ref_s / s:.2f} |")
        for backend in ("pycocotools", "faster_coco_eval"):
            s, _ = timed(lambda b=backend: evaluate_detections(gt, dt, str(root / "novel.txt"), backend=b))
            print(f"| ovdistill evaluate det --backend {backend} | {s:.1f} | {ref_s / s:.2f} |")


if __name__ == "__main__":
    main()
