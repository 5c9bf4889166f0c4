"""Input checks and the one resampling path every teacher uses.

Teachers take float images ``[B, 3, H, W]`` in ``[0, 1]`` and boxes in xyxy pixels. Whole
images and box crops are both resampled with RoIAlign, so "resize the whole image" is exactly
"crop the whole-image box": a region covering the image embeds to the image embedding.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import roi_align

_RANGE_TOL = 1e-4
_BOX_TOL = 1e-3


def check_images(images: Tensor, what: str = "images") -> None:
    """Raise a ``ValueError`` naming the offending property unless ``images`` is ``[B,3,H,W]`` float in [0,1]."""
    if not isinstance(images, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor [B,3,H,W] with values in [0,1], got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{what} must have shape [B,3,H,W], got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"{what} must be a float tensor with values in [0,1], got dtype {images.dtype}")
    if images.numel():
        if not torch.isfinite(images).all():
            bad = (~torch.isfinite(images)).nonzero()[0].tolist()
            raise ValueError(f"{what} hold a non-finite value (NaN or inf) at index {bad}; embeddings would be NaN")
        lo, hi = float(images.min()), float(images.max())
        if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
            raise ValueError(
                f"{what} must have values in [0,1] (the teacher normalises them itself), "
                f"got min={lo:.4g} max={hi:.4g}; pass raw RGB scaled to [0,1], not mean/std-normalised tensors"
            )


def check_boxes(boxes: list[Tensor], images: Tensor) -> None:
    """Check one ``[N_i, 4]`` xyxy box tensor per image, inside the image and with positive size."""
    if not isinstance(boxes, (list, tuple)):
        raise TypeError(f"boxes must be a list with one [N,4] tensor per image, got {type(boxes).__name__}")
    if len(boxes) != images.shape[0]:
        raise ValueError(f"boxes has {len(boxes)} entries but images has batch size {images.shape[0]}")
    height, width = images.shape[-2:]
    for i, b in enumerate(boxes):
        if not isinstance(b, Tensor) or b.ndim != 2 or b.shape[1] != 4:
            shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
            raise ValueError(f"boxes[{i}] must be a [N,4] xyxy tensor, got {shape}")
        if not b.numel():
            continue
        if not torch.isfinite(b).all():
            j = int((~torch.isfinite(b)).any(dim=1).nonzero()[0])
            raise ValueError(f"boxes[{i}][{j}] = {b[j].tolist()} is not finite")
        bad = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
        if bad.any():
            j = int(bad.nonzero()[0])
            raise ValueError(
                f"boxes[{i}][{j}] = {b[j].tolist()} has x2 <= x1 or y2 <= y1; boxes must be xyxy with positive size"
            )
        outside = (b[:, 0] < -_BOX_TOL) | (b[:, 1] < -_BOX_TOL) | (b[:, 2] > width + _BOX_TOL) | (
            b[:, 3] > height + _BOX_TOL
        )
        if outside.any():
            j = int(outside.nonzero()[0])
            raise ValueError(
                f"boxes[{i}][{j}] = {b[j].tolist()} lies outside image {i} of size (H={height}, W={width}); "
                "clip boxes to the image first"
            )


def scale_boxes(boxes: Tensor, scale: float) -> Tensor:
    """Enlarge xyxy boxes about their centres by ``scale`` (ViLD's 1.5x context crop)."""
    if scale == 1.0:
        return boxes
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * (scale / 2)
    return torch.cat([centre - half, centre + half], dim=1)


def context_boxes(boxes: Tensor, scale: float, height: int, width: int) -> Tensor:
    """ViLD's context crop: boxes enlarged about their centres by ``scale``, then clipped to the image (as the
    public ViLD-image implementation, DetPro, crops: no padding beyond the image)."""
    out = scale_boxes(boxes, scale)
    limits = torch.tensor([width, height, width, height], dtype=out.dtype, device=out.device)
    return torch.minimum(out.clamp_min(0), limits)


def whole_image_boxes(images: Tensor) -> list[Tensor]:
    """One box per image covering all of it."""
    height, width = images.shape[-2:]
    box = torch.tensor([[0.0, 0.0, float(width), float(height)]], device=images.device, dtype=images.dtype)
    return [box for _ in range(images.shape[0])]


def crop_and_resize(images: Tensor, rois: Tensor, size: tuple[int, int]) -> Tensor:
    """Crop ``rois`` (``[K,5]``: batch index, x1, y1, x2, y2) and resample each to ``size`` with RoIAlign.

    ``aligned=True`` puts pixel centres on half-integers, so a whole-image box resampled to the
    image's own size returns the image unchanged; the adaptive sampling ratio averages several
    bilinear samples per output pixel, which anti-aliases downscaling. Outside the image is black.
    """
    return roi_align(images, rois.to(images.dtype), output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def to_rois(boxes: list[Tensor]) -> Tensor:
    """Concatenate per-image boxes into RoIAlign's ``[K,5]`` format."""
    idx = [torch.full((len(b), 1), i, dtype=b.dtype, device=b.device) for i, b in enumerate(boxes)]
    return torch.cat([torch.cat([i, b], dim=1) for i, b in zip(idx, boxes, strict=True)], dim=0)
