"""Test-time refinements of dense zero-shot logits (MaskCLIP, Zhou et al. 2022), applied in the official
order: prompt denoising, then key smoothing. Both act on ``[B, K, h, w]`` at the teacher's feature
resolution, before upsampling.

Official variants (MaskCLIP's ``MaskClipHead.refine_output``) are the defaults:

- prompt denoising sets the logits of a class whose peak ``softmax(100 * logits)`` over the image is below
  ``pd_thresh`` to -100 (no class is protected);
- key smoothing turns logits into ``softmax(100 * logits)`` and replaces them, where the peak probability
  is below ``ks_thresh`` (1.0: everywhere), by ``W @ p`` with ``W = k k^T`` for last-block keys ``k``
  L2-normalised **over the tokens** of each channel — no softmax, no clamp, no row normalisation.

``affinity="cosine"`` is the wave-1 alternative: per-token cosine affinity, negative parts clamped, rows
normalised (a weighted average of the other pixels' probabilities).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor


def prompt_denoise(logits: Tensor, threshold: float = 0.5, temperature: float = 100.0, keep_best: bool = False) -> Tensor:
    """Drop classes that are nowhere confident in an image: their logits become -100 (official).

    ``keep_best=True`` always keeps each image's most confident class (so a pixel never loses every class).
    """
    probs = (temperature * logits).softmax(dim=1)
    peak = probs.flatten(2).amax(dim=2)  # [B, K]
    drop = peak < threshold
    if keep_best:
        drop[torch.arange(len(peak)), peak.argmax(dim=1)] = False
    return logits.masked_fill(drop[:, :, None, None], -100.0)


def key_smoothing(
    logits: Tensor,
    keys: Tensor,
    temperature: float = 100.0,
    threshold: float = 1.0,
    affinity: Literal["official", "cosine"] = "official",
) -> Tensor:
    """Per-pixel class probabilities ``softmax(temperature * logits)`` smoothed by last-block key affinity.

    Returns scores ``[B, K, h, w]`` (probabilities where not smoothed, affinity-weighted sums where smoothed);
    their arg-max over K is the prediction.
    """
    b, k, h, w = logits.shape
    if keys.shape[0] != b or keys.shape[-2:] != (h, w):
        raise ValueError(f"keys {tuple(keys.shape)} must match logits {tuple(logits.shape)} in batch and size")
    probs = (temperature * logits).softmax(dim=1).flatten(2).transpose(1, 2)  # [B, N, K]
    tokens = keys.flatten(2).float().transpose(1, 2)  # [B, N, C]
    if affinity == "official":
        tokens = F.normalize(tokens, dim=1)  # over the tokens of each channel, as the official code's F.normalize(k)
        weight = tokens @ tokens.transpose(1, 2)  # [B, N, N]
    elif affinity == "cosine":
        tokens = F.normalize(tokens, dim=2)
        weight = (tokens @ tokens.transpose(1, 2)).clamp_min(0)
        weight = weight / weight.sum(dim=2, keepdim=True).clamp_min(1e-6)
    else:
        raise ValueError(f"affinity={affinity!r}; expected 'official' or 'cosine'")
    smoothed = weight @ probs
    where = probs.amax(dim=2, keepdim=True) < threshold
    out = torch.where(where, smoothed, probs)
    return out.transpose(1, 2).reshape(b, k, h, w)


def refine_logits(
    logits: Tensor, keys: Tensor, denoise: float | None = None, smooth: bool = False,
    affinity: Literal["official", "cosine"] = "official",
) -> Tensor:
    """MaskCLIP's test-time refinement in its official order: prompt denoising, then key smoothing. With
    smoothing the result is ``log(smoothed probabilities) / 100`` (the logit scale; the same arg-max)."""
    if denoise is not None:
        logits = prompt_denoise(logits, threshold=denoise)
    if smooth:
        logits = key_smoothing(logits, keys, affinity=affinity).clamp_min(1e-12).log() / 100.0
    return logits
