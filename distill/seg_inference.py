"""Whole-image and sliding-window inference for dense predictors at any input resolution."""
from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor


def whole_inference(fn: Callable[[Tensor], Tensor], images: Tensor, divisor: int = 32) -> Tensor:
    """Pad ``images`` (bottom/right, zeros) to a multiple of ``divisor``, run ``fn``, crop the logits back."""
    h, w = images.shape[-2:]
    ph, pw = (-h) % divisor, (-w) % divisor
    logits = fn(F.pad(images, (0, pw, 0, ph)) if ph or pw else images)
    return logits[..., :h, :w]


def slide_inference(
    fn: Callable[[Tensor], Tensor], images: Tensor, num_classes: int, crop: int, stride: int, divisor: int = 32
) -> Tensor:
    """mmseg-style sliding window: overlapping ``crop`` windows every ``stride`` pixels, logits averaged."""
    b, _, h, w = images.shape
    out = images.new_zeros(b, num_classes, h, w)
    count = images.new_zeros(1, 1, h, w)
    rows = max(h - crop + stride - 1, 0) // stride + 1
    cols = max(w - crop + stride - 1, 0) // stride + 1
    for r in range(rows):
        for c in range(cols):
            y1, x1 = min(r * stride, max(h - crop, 0)), min(c * stride, max(w - crop, 0))
            y2, x2 = min(y1 + crop, h), min(x1 + crop, w)
            out[..., y1:y2, x1:x2] += whole_inference(fn, images[..., y1:y2, x1:x2], divisor)
            count[..., y1:y2, x1:x2] += 1
    return out / count
