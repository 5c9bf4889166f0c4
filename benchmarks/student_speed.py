"""Training-step time of the world's segmentation students (decoder choice, where the head upsamples, dense
distillation's second head), as the demo trains them.

    python benchmarks/student_speed.py [--batch-size 16] [--steps 6]

One step = forward, per-pixel logits against 9 text embeddings (temperature 0.07) at the input resolution,
cross-entropy, backward and an AdamW update, on 96 px images, torch threads as the process has them. FPN upsamples
4x either the 128-d embeddings (smp's head, ``upsample="embeddings"``) or the 9 logits (LSeg's order, the default).
The last rows add dense distillation's cosine loss against a 12 x 12 teacher map (stride 8, as the demo's cache) into
the one head or into a second head. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from distill.seg_losses import dense_feature_loss
from pipelines.bench.segmentation import world_student


def step_seconds(arch: str, batch: int, steps: int, embed_dim: int = 128, classes: int = 9, distill: str | None = None,
                 upsample: str = "logits") -> tuple[float, int]:
    """``distill``: None (LSeg), ``"one head"`` or ``"second head"`` (dense distillation's ensemble)."""
    student = world_student(embed_dim, 0, arch=arch, image_head=distill == "second head", upsample=upsample)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, 96, 96, generator=g)
    labels = torch.randint(0, classes, (batch, 96, 96), generator=g)
    text = F.normalize(torch.randn(classes, embed_dim, generator=g), dim=-1)
    teacher_map = torch.randn(batch, embed_dim, 12, 12, generator=g)
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        emb, image_emb = student.forward_heads(images)
        logits = student.classify(emb, text, 1 / 0.07, size=images.shape[-2:])
        loss = F.cross_entropy(logits, labels)
        if distill:
            loss = loss + dense_feature_loss(emb if image_emb is None else image_emb, teacher_map)
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
    print("| decoder | upsampled | loss | s / step | parameters (M) |\n|---|---|---|---|---|")
    runs = [("Unet", "logits", None), ("FPN", "embeddings", None), ("FPN", "logits", None), ("FPN", "logits", "one head"),
            ("FPN", "logits", "second head")]
    for arch, upsample, distill in runs:
        seconds, params = step_seconds(arch, args.batch_size, args.steps, distill=distill, upsample=upsample)
        loss = "cross-entropy" if distill is None else f"+ dense distillation, {distill}"
        where = "- (full-resolution head)" if arch == "Unet" else upsample
        print(f"| {arch} | {where} | {loss} | {seconds:.3f} | {params / 1e6:.2f} |", flush=True)


if __name__ == "__main__":
    main()
