"""Dense-pooled region embeddings: one dense (MaskCLIP-path) teacher forward per image, then RoIAlign.

A crop teacher (``encode_regions``) runs the image tower once per box and scale; this one runs it once per
image and averages the dense map under each (context-enlarged) box — the region-embedding trick of
RegionCLIP / dense-CLIP detectors, far cheaper when an image has hundreds of boxes. The two agree only
as well as the teacher's dense map localises (``benchmarks/region_teacher.py`` measures both).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

from .image_ops import context_boxes, to_rois

POOL = (4, 4)  # bins per box; adaptive sampling inside each bin makes the result an area average


def pool_regions(feats: Tensor, image_hw: tuple[int, int], boxes: list[Tensor], scales=(1.0, 1.5)) -> Tensor:
    """``[sum N_i, D]``: the mean of ``feats`` ``[B, D, h, w]`` (the map of images of size ``image_hw``) under each
    box enlarged by each scale (clipped to the image), normalised, averaged over scales, re-normalised."""
    if not scales:
        raise ValueError("scales must name at least one box scale, e.g. (1.0, 1.5)")
    n = sum(len(b) for b in boxes)
    if n == 0:
        return feats.new_zeros(0, feats.shape[1])
    height, width = image_hw
    rois = to_rois([b.to(feats.device, torch.float32) for b in boxes])
    scale_y, scale_x = feats.shape[-2] / height, feats.shape[-1] / width
    out = []
    for s in scales:
        enlarged = context_boxes(rois[:, 1:], s, height, width)
        grid = enlarged * torch.tensor([scale_x, scale_y, scale_x, scale_y], device=feats.device)
        pooled = roi_align(feats.float(), torch.cat([rois[:, :1], grid], dim=1), POOL, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        out.append(F.normalize(pooled.mean(dim=(2, 3)), dim=-1))
    return F.normalize(torch.stack(out).mean(dim=0), dim=-1)
