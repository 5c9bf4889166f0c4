"""How close the teacher's forward passes come to the machine's limit.

    python benchmarks/machine_limit.py [--device cpu|cuda] [--models embedded RN50 ViT-B-16]

The limit is the measured FLOP/s of one large ``torch.matmul`` (fp32 on CPU, bf16 on a GPU); each teacher's
image and dense forwards are timed at their real input sizes (random weights; the embedded teacher is the
shipped one), their FLOPs counted with ``torch.utils.flop_counter``, and the achieved rate printed as a
fraction of the limit. Target: >= 50 % on CPU, >= 40 % of bf16 on a GPU.
"""
from __future__ import annotations

import argparse
from functools import partial

import torch
from bench_common import counted_flops, matmul_flops, real_teacher, seconds, table

DENSE_ARGS = {"embedded": {"size": (96, 96), "output_stride": 8}, "RN50": {"size": (448, 448)}, "ViT-B-16": {"size": (448, 448)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["embedded", "RN50", "ViT-B-16"])
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    dtype, precision = (torch.bfloat16, "bf16") if gpu else (torch.float32, "fp32")
    limit = matmul_flops(args.device, dtype)
    print(f"machine: {args.device}, {torch.get_num_threads()} threads; measured {precision} matmul {limit / 1e9:.1f} GFLOP/s\n")
    rows = []
    for name in args.models:
        teacher = real_teacher(name, args.device, precision)
        size = tuple(teacher.image_size)
        images = torch.rand(args.batch, 3, *size, device=args.device)
        passes = {f"image {size[0]}px": partial(teacher.encode_image, images)}
        dense = DENSE_ARGS.get(name, {"size": size})
        big = torch.rand(args.batch, 3, *dense["size"], device=args.device)
        passes[f"dense {dense['size'][0]}px"] = partial(teacher.encode_dense, big, "maskclip", dense["size"], dense.get("output_stride"))
        for what, fn in passes.items():
            with torch.no_grad():
                flops = counted_flops(fn)
                secs = seconds(fn, device=args.device)
            rate = flops / secs
            rows.append([name, what, args.batch, f"{flops / args.batch / 1e9:.2f}", f"{args.batch / secs:.1f}", f"{rate / 1e9:.1f}",
                         f"{100 * rate / limit:.0f} %"])
    print(table(["teacher", "forward", "batch", "GFLOP/image", "images/s", "GFLOP/s", "of matmul limit"], rows))


if __name__ == "__main__":
    main()
