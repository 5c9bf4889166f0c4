"""Region embeddings three ways: a naive per-box loop, the batched RoIAlign crop path, and dense pooling.

    python benchmarks/region_teacher.py [--device cpu|cuda] [--models embedded RN50 ViT-B-16] [--boxes 100]

Speed: regions/s of (a) a Python loop that crops each box (1x and 1.5x), resizes and encodes it alone, (b)
``encode_regions`` (all crops of the batch in one RoIAlign call, embedded in chunks) and (c)
``encode_regions_dense`` (one dense forward per image, RoIAlign means); ratios b/a and c/b. Agreement (the
embedded teacher on world objects, 40 per class): mean cosine between (b) and (c), and zero-shot accuracy of
each with 1x, 1.5x and 1x+1.5x boxes. Targets: b >= 10x a; c >= 20x b.
"""
from __future__ import annotations

import argparse
from functools import partial

import torch
import torch.nn.functional as F
from bench_common import real_teacher, seconds, table

from teachers.image_ops import context_boxes


def naive_loop(teacher, images, boxes, scales=(1.0, 1.5)):
    """What the paper repos do: one crop, one resize, one forward per box and scale."""
    out = []
    height, width = images.shape[-2:]
    for img, bx in zip(images, boxes, strict=True):
        for box in bx:
            emb = []
            for s in scales:
                x0, y0, x1, y1 = context_boxes(box[None], s, height, width)[0].round().long().tolist()
                crop = img[:, y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)][None]
                crop = F.interpolate(crop, size=tuple(teacher.image_size), mode="bilinear", align_corners=False)
                emb.append(teacher.encode_image(crop)[0])
            out.append(F.normalize(torch.stack(emb).mean(0), dim=-1))
    return torch.stack(out)


def random_boxes(n_images: int, n: int, size: int, device) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(n_images, n, 2, generator=g) * size * 0.8
    wh = torch.rand(n_images, n, 2, generator=g) * size * 0.3 + size * 0.05
    return [torch.cat([p, (p + s).clamp(max=size)], 1).to(device) for p, s in zip(xy, wh, strict=True)]


def speed_rows(models, device, n_images, n_boxes) -> list[list]:
    rows = []
    for name in models:
        teacher = real_teacher(name, device)
        size = 96 if name == "embedded" else 448
        stride = 8 if name == "embedded" else None
        images = torch.rand(n_images, 3, size, size, device=device)
        boxes = random_boxes(n_images, n_boxes, size, device)
        n = n_images * n_boxes
        with torch.no_grad():
            t_naive = seconds(partial(naive_loop, teacher, images, boxes), repeats=1, device=device)
            t_crop = seconds(partial(teacher.encode_regions, images, boxes), repeats=2, device=device)
            t_dense = seconds(partial(teacher.encode_regions_dense, images, boxes, output_stride=stride), repeats=3, device=device)
        rows.append([name, f"{size}px x {n_images}, {n_boxes} boxes", f"{n / t_naive:.0f}", f"{n / t_crop:.0f}", f"{n / t_dense:.0f}",
                     f"{t_naive / t_crop:.1f}x", f"{t_crop / t_dense:.1f}x"])
    return rows


def agreement_rows(per_class: int) -> list[list]:
    from pipelines.world.shapes import SHAPES
    from pipelines.world.zeroshot import single_object_crops

    teacher = real_teacher("embedded")
    images, boxes, labels = single_object_crops(tuple(SHAPES), per_class, 11)
    text = teacher.encode_text(list(SHAPES))
    rows = []
    for scales in ((1.0,), (1.5,), (1.0, 1.5)):
        crop = torch.cat([teacher.encode_regions(images[s : s + 64], boxes[s : s + 64], scales) for s in range(0, len(images), 64)])
        dense = torch.cat([teacher.encode_regions_dense(images[s : s + 64], boxes[s : s + 64], scales, output_stride=8)
                           for s in range(0, len(images), 64)])

        def acc(emb):
            pred = (emb @ text.T).argmax(1)
            return 100 * sum(float((pred[labels == i] == i).float().mean()) for i in range(len(SHAPES))) / len(SHAPES)

        rows.append(["+".join(f"{s:g}x" for s in scales), f"{float((crop * dense).sum(1).mean()):.3f}", f"{acc(crop):.1f}", f"{acc(dense):.1f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["embedded", "RN50", "ViT-B-16"])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--boxes", type=int, default=100, help="boxes per image (ViLD: 300 proposals)")
    parser.add_argument("--per-class", type=int, default=40)
    args = parser.parse_args()
    print(f"machine: {args.device}, {torch.get_num_threads()} threads\n")
    print(table(["teacher", "input", "naive loop regions/s", "batched crops regions/s", "dense-pooled regions/s",
                 "batched / naive", "dense / batched"], speed_rows(args.models, args.device, args.images, args.boxes)))
    print("\nAgreement, embedded teacher, world objects (40 per class, own seed):\n")
    print(table(["boxes", "mean cos(crop, dense)", "crop zero-shot %", "dense-pooled zero-shot %"], agreement_rows(args.per_class)))


if __name__ == "__main__":
    main()
