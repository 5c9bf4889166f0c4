"""``ovdistill demo``: the embedded default mission, offline, on this machine.

Until the synthetic world lands this runs every teacher method on a tiny random-initialised
open_clip ViT and reports what it checked.
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch

TINY_VIT = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovdistill demo", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smallest settings (CI)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from teachers import OpenCLIPTeacher

    torch.manual_seed(args.seed)
    start = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        teacher = OpenCLIPTeacher("ovdistill-demo-vit", None, model_cfg=TINY_VIT)
    images = torch.rand(2, 3, 96, 96)
    boxes = [torch.tensor([[8.0, 8.0, 60.0, 60.0]]), torch.tensor([[0.0, 0.0, 96.0, 96.0], [30.0, 20.0, 90.0, 70.0]])]
    text = teacher.encode_text(["circle", "square", "triangle"], "imagenet")
    image = teacher.encode_image(images)
    regions = teacher.encode_regions(images, boxes)
    dense = teacher.dense_logits(images, text, denoise=0.5, smooth=True)
    print(f"teacher {teacher.name} (random init: the synthetic world and its trained teacher are not built yet)")
    print(f"  encode_text    3 classes x 80 templates -> {tuple(text.shape)}")
    print(f"  encode_image   2 images                 -> {tuple(image.shape)}")
    print(f"  encode_regions 3 boxes x 2 scales       -> {tuple(regions.shape)}")
    print(f"  dense_logits   maskclip + smoothing     -> {tuple(dense.shape)}")
    print(f"done in {time.time() - start:.1f}s")
    return 0
