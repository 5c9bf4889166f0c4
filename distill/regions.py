"""Teacher region embeddings for detection batches, where images are a list that may differ in size.

``source="crop"``: ViLD's crops (``encode_regions``); ``"dense"``: RoIAlign over one dense teacher forward per
image (``encode_regions_dense``), with the dense path's ``output_stride``.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

REGION_SOURCES = ("crop", "dense")


@torch.no_grad()
def teacher_region_embeddings(teacher, images: list[Tensor], boxes: list[Tensor], scales=(1.0, 1.5),
                              source: Literal["crop", "dense"] = "crop", output_stride: int | None = None) -> Tensor:
    """``[sum N_i, D]`` in the order of ``boxes``; one batched call when all images share a size."""
    if source not in REGION_SOURCES:
        raise ValueError(f"region teacher {source!r} is not one of {REGION_SOURCES}")
    if source == "dense":
        def embed(x, b):
            return teacher.encode_regions_dense(x, b, scales=scales, output_stride=output_stride)
    else:
        def embed(x, b):
            return teacher.encode_regions(x, b, scales=scales)
    if len({tuple(i.shape) for i in images}) == 1:
        return embed(torch.stack(images), boxes)
    return torch.cat([embed(img[None], [b]) for img, b in zip(images, boxes, strict=True)])
