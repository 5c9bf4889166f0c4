"""PAMR: pixel-adaptive mask refinement (Araslanov & Roth, CVPR 2020), a training-free, image-guided refinement
of dense class probabilities.

A dense CLIP map is coarse (one embedding per 8-32 px) and a CNN position's receptive field covers nearby objects,
so the map bleeds objects onto the background around them. PAMR pulls every pixel's probabilities towards those of
the neighbours that look like it: for each dilation ``d`` in ``dilations`` it takes the 8 neighbours at offset ``d``
(replicate padding), scores neighbour ``j`` of pixel ``i`` with ``-|I_i - I_j| / (1e-8 + 0.1 * sigma_i)``, where
``sigma_i`` is the standard deviation (unbiased) of the 9 taps at that dilation, averages the score over colour
channels, softmaxes it over all ``8 * len(dilations)`` neighbours, and then ``steps`` times replaces the
probabilities by the affinity-weighted sum of the neighbours' (the pixel itself is not among them).

Defaults are the authors' (``visinf/1-stage-wseg``: 10 steps, dilations 1, 2, 4, 8, 12, 24); open-vocabulary
segmenters (TCL, SCLIP) apply the same module to CLIP's dense maps.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: the authors' dilations (1-stage-wseg's PAMR for its masks)
PAMR_DILATIONS = (1, 2, 4, 8, 12, 24)
_OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


def _shifted(padded: Tensor, d: int, h: int, w: int):
    """The 8 ``[..., H, W]`` views of a map padded by ``d`` that hold each pixel's neighbour at offset ``d``."""
    return [padded[..., d + dy * d : d + dy * d + h, d + dx * d : d + dx * d + w] for dy, dx in _OFFSETS]


def _neighbours(x: Tensor, d: int) -> Tensor:
    """``[B, C, 8, H, W]``: the 8 neighbours of every pixel at offset ``d`` (replicate padding)."""
    return torch.stack(_shifted(F.pad(x, [d] * 4, mode="replicate"), d, *x.shape[-2:]), dim=2)


def pamr_affinity(image: Tensor, dilations=PAMR_DILATIONS) -> Tensor:
    """``[B, 1, 8 * len(dilations), H, W]``: each pixel's weights over its neighbours (they sum to 1)."""
    scores = []
    for d in dilations:
        near = _neighbours(image, d)
        sigma = torch.cat([near, image[:, :, None]], dim=2).std(dim=2, keepdim=True)
        scores.append(-(near - image[:, :, None]).abs() / (1e-8 + 0.1 * sigma))
    return torch.cat(scores, dim=2).mean(dim=1, keepdim=True).softmax(dim=2)


def pamr(image: Tensor, probs: Tensor, steps: int = 10, dilations=PAMR_DILATIONS) -> Tensor:
    """Refined probabilities ``[B, K, H, W]`` of ``probs`` ``[B, K, H, W]`` guided by ``image`` ``[B, 3, H, W]``."""
    if image.shape[0] != probs.shape[0] or image.shape[-2:] != probs.shape[-2:]:
        raise ValueError(f"PAMR needs the image {tuple(image.shape)} at the probabilities' batch and size {tuple(probs.shape)}")
    if steps < 0 or not dilations or any(int(d) < 1 for d in dilations):
        raise ValueError(f"PAMR needs steps >= 0 and dilations >= 1, got steps={steps}, dilations={tuple(dilations)}")
    dilations = tuple(int(d) for d in dilations)
    weight = pamr_affinity(image.float(), dilations)[:, 0]  # [B, P, H, W]
    out = probs.float()
    h, w = out.shape[-2:]
    for _ in range(steps):
        # one neighbour at a time: stacking all 8 * len(dilations) shifted copies costs that many times the map's memory
        acc, n = torch.zeros_like(out), 0
        for d in dilations:
            for near in _shifted(F.pad(out, [d] * 4, mode="replicate"), d, h, w):
                acc.addcmul_(near, weight[:, n : n + 1])
                n += 1
        out = acc
    return out
