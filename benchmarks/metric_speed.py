"""The training-time metrics against what they wrap: ``OpenVocabMeanIoU`` (torchmetrics) vs a bare
``torch.bincount`` confusion matrix, and ``OpenVocabDetectionAP`` on 5,000 synthetic images vs pycocotools'
``COCOeval`` run directly and vs faster-coco-eval (same numbers, time ratio).

    python benchmarks/metric_speed.py [--images 5000]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import time
from pathlib import Path

import torch
from bench_common import table
from evaluate_speed import direct, write_det

from distill.metrics import OpenVocabDetectionAP, OpenVocabMeanIoU


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def miou_rows(n: int, size: int = 128, k: int = 21) -> list[list]:
    g = torch.Generator().manual_seed(0)
    preds = torch.randint(0, k, (n, size, size), generator=g)
    targets = torch.where(torch.rand(n, size, size, generator=g) < 0.7, preds, torch.randint(0, k, (n, size, size), generator=g))
    metric = OpenVocabMeanIoU(k, list(range(15, k)))

    def ours():
        for s in range(0, n, 32):
            metric.update(preds[s : s + 32], targets[s : s + 32])
        return metric.compute()["mIoU"]

    def bare():
        conf = torch.zeros(k * k, dtype=torch.long)
        for s in range(0, n, 32):
            conf += torch.bincount((targets[s : s + 32] * k + preds[s : s + 32]).flatten(), minlength=k * k)
        conf = conf.view(k, k).double()
        iou = conf.diag() / (conf.sum(0) + conf.sum(1) - conf.diag())
        return float(iou.mean() * 100)

    t_ours, m_ours = timed(ours)
    t_bare, m_bare = timed(bare)
    px = n * size * size
    return [["OpenVocabMeanIoU.update + compute", f"{px / t_ours / 1e6:.1f} Mpx/s", f"{m_ours:.3f}"],
            ["bare torch.bincount confusion matrix", f"{px / t_bare / 1e6:.1f} Mpx/s ({t_bare / t_ours:.2f}x ours)", f"{m_bare:.3f}"]]


def det_rows(root: Path, n: int) -> list[list]:
    import json

    gt_path, dt_path = write_det(root, n)
    gt, dt = json.loads(gt_path.read_text()), json.loads(dt_path.read_text())
    names = [c["name"] for c in gt["categories"]]
    by_image = {i["id"]: ([], []) for i in gt["images"]}
    for a in gt["annotations"]:
        by_image[a["image_id"]][0].append(a)
    for d in dt:
        by_image[d["image_id"]][1].append(d)

    def xyxy(b):
        return [b[0], b[1], b[0] + b[2], b[1] + b[3]]

    preds, targets = [], []
    for _, (anns, dets) in sorted(by_image.items()):
        targets.append({"boxes": torch.tensor([xyxy(a["bbox"]) for a in anns]).reshape(-1, 4),
                        "labels": torch.tensor([a["category_id"] - 1 for a in anns], dtype=torch.long)})
        preds.append({"boxes": torch.tensor([xyxy(d["bbox"]) for d in dets]).reshape(-1, 4), "scores": torch.tensor([d["score"] for d in dets]),
                      "labels": torch.tensor([d["category_id"] - 1 for d in dets], dtype=torch.long)})
    rows = []
    for backend in ("pycocotools", "faster_coco_eval"):
        metric = OpenVocabDetectionAP(names, list(range(15, 20)), backend=backend)

        def ours(metric=metric):
            with contextlib.redirect_stdout(io.StringIO()):
                metric.update(preds, targets)
                return metric.compute()["AP"]

        t_ours, ap = timed(ours)
        t_direct, ap_direct = timed(lambda backend=backend: direct(gt_path, dt_path, backend))
        rows.append([backend, f"{t_ours:.1f} s", f"{t_direct:.1f} s", f"{t_direct / t_ours:.2f}x", f"{100 * ap_direct:.2f}", f"{ap:.2f}"])
    return rows


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    args = parser.parse_args()
    print(f"machine: cpu, {torch.get_num_threads()} threads; {args.images} images\n")
    print(table(["segmentation metric (128 px, 21 classes)", "throughput", "mIoU"], miou_rows(args.images)))
    print()
    with tempfile.TemporaryDirectory() as tmp:
        rows = det_rows(Path(tmp), args.images)
    print(table(["detection backend", "OpenVocabDetectionAP update + compute", "COCOeval run directly", "direct / ours",
                 "AP direct (mean over classes with GT)", "AP ours"], rows))


if __name__ == "__main__":
    main()
