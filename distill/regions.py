"""Teacher region embeddings for detection batches, where images are a list that may differ in size."""
from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def teacher_region_embeddings(teacher, images: list[Tensor], boxes: list[Tensor], scales=(1.0, 1.5)) -> Tensor:
    """``[sum N_i, D]`` in the order of ``boxes``; one batched call when all images share a size."""
    if len({tuple(i.shape) for i in images}) == 1:
        return teacher.encode_regions(torch.stack(images), boxes, scales=scales)
    return torch.cat([teacher.encode_regions(img[None], [b], scales=scales) for img, b in zip(images, boxes)])
