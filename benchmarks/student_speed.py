"""Training-step time of the world's segmentation students (decoder choice), as the demo trains them.

    python benchmarks/student_speed.py [--batch-size 16] [--steps 6]

One step = forward, per-pixel logits against 9 text embeddings (temperature 0.07), cross-entropy, backward and
an AdamW update, on 96 px images, torch threads as the process has them. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from pipelines.bench.segmentation import WORLD_DECODERS, world_student


def step_seconds(arch: str, batch: int, steps: int, embed_dim: int = 128, classes: int = 9) -> tuple[float, int]:
    student = world_student(embed_dim, 0, arch=arch)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, 96, 96, generator=g)
    labels = torch.randint(0, classes, (batch, 96, 96), generator=g)
    text = F.normalize(torch.randn(classes, embed_dim, generator=g), dim=-1)
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        emb = student(images)
        logits = torch.einsum("bdhw,cd->bchw", emb, text) / 0.07
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step pays one-off allocation
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], sum(p.numel() for p in student.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}; batch {args.batch_size} x 96 px; median of {args.steps} steps")
    print("| decoder | s / step | parameters (M) |\n|---|---|---|")
    for arch in WORLD_DECODERS:
        seconds, params = step_seconds(arch, args.batch_size, args.steps)
        print(f"| {arch} | {seconds:.3f} | {params / 1e6:.2f} |", flush=True)


if __name__ == "__main__":
    main()
