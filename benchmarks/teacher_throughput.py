"""Teacher throughput: images/s for encode_image, regions/s for encode_regions, images/s for encode_dense.

    python benchmarks/teacher_throughput.py [--models ViT-B-16 RN50] [--device cpu|cuda] [--precision fp32|bf16]

Architectures are built with random weights (throughput does not depend on the values), so this runs
offline. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch

from teachers import OpenCLIPTeacher


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
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--boxes", type=int, default=32, help="boxes per image for encode_regions")
    args = parser.parse_args()
    print("| model | device | precision | image/s | region/s (1x+1.5x) | dense image/s |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            teacher = OpenCLIPTeacher(name, None, precision=args.precision, device=args.device)
        images = torch.rand(args.batch, 3, 480, 640, device=args.device)
        g = torch.Generator().manual_seed(0)
        xy = torch.rand(args.batch, args.boxes, 2, generator=g) * torch.tensor([500.0, 360.0])
        wh = torch.rand(args.batch, args.boxes, 2, generator=g) * 100 + 20
        boxes = [torch.cat([p, p + s], 1).to(args.device) for p, s in zip(xy, wh)]
        img = _rate(lambda: teacher.encode_image(images), args.batch)
        reg = _rate(lambda: teacher.encode_regions(images, boxes), args.batch * args.boxes)
        try:
            dense = f"{_rate(lambda: teacher.encode_dense(images, size=(448, 448)), args.batch):.1f}"
        except NotImplementedError:
            dense = "n/a"
        print(f"| {name} | {args.device} | {args.precision} | {img:.1f} | {reg:.1f} | {dense} |")


if __name__ == "__main__":
    main()
