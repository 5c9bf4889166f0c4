"""Teacher throughput: images/s for encode_image, regions/s for encode_regions, images/s for encode_dense.

    python benchmarks/teacher_throughput.py [--models ViT-B-16 RN50 embedded] [--device cpu|cuda] [--precision fp32 bf16]

Architectures are built with random weights (throughput does not depend on the values), so this runs
offline; ``embedded`` is the shipped world teacher on the demo's 96 px scenes (boxes of 6-36 px, dense maps at stride
8, as the demo reads them). Each precision given gets a row. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import time

import torch
from bench_common import real_teacher


def _rate(fn, n_items: int, repeats: int = 3) -> float:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return n_items * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["ViT-B-16", "RN50"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", nargs="+", default=["fp32"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--boxes", type=int, default=32, help="boxes per image for encode_regions")
    args = parser.parse_args()
    print("| model | device | precision | image/s | region/s (1x+1.5x) | dense image/s |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        for precision in args.precision:
            print(_row(name, args.device, precision, args.batch, args.boxes), flush=True)


def _row(name: str, device: str, precision: str, batch: int, n_boxes: int) -> str:
    world = name == "embedded"
    teacher = real_teacher(name, device, precision)
    (h, w), (lo, span), dense_args = ((96, 96), (6, 30), {"size": (96, 96), "output_stride": 8}) if world else \
        ((480, 640), (20, 100), {"size": (448, 448)})
    images = torch.rand(batch, 3, h, w, device=device)
    g = torch.Generator().manual_seed(0)
    wh = torch.rand(batch, n_boxes, 2, generator=g) * span + lo
    xy = torch.rand(batch, n_boxes, 2, generator=g) * (torch.tensor([w, h]) - wh)
    boxes = [torch.cat([p, p + s], 1).to(device) for p, s in zip(xy, wh, strict=True)]
    img = _rate(lambda: teacher.encode_image(images), batch)
    reg = _rate(lambda: teacher.encode_regions(images, boxes), batch * n_boxes)
    try:
        dense = f"{_rate(lambda: teacher.encode_dense(images, **dense_args), batch):.1f}"
    except NotImplementedError:
        dense = "n/a"
    return f"| {name} | {device} | {precision} | {img:.1f} | {reg:.1f} | {dense} |"


if __name__ == "__main__":
    main()
