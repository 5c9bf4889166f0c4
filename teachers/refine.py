"""Test-time refinements of dense zero-shot logits (MaskCLIP, Zhou et al. 2022).

Both act on logits ``[B, K, h, w]`` at the teacher's feature resolution, before upsampling.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def prompt_denoise(logits: Tensor, threshold: float = 0.5, temperature: float = 100.0) -> Tensor:
    """Drop classes that are nowhere confident in an image.

    A class whose highest ``softmax(temperature * logits)`` probability over all pixels of an image
    is below ``threshold`` is treated as absent from that image: its logits drop by ``1e4`` (finite, so
    upsampling stays NaN-free). The
    class with the highest peak is always kept, so every pixel keeps a prediction.
    """
    probs = (temperature * logits).softmax(dim=1)
    peak = probs.flatten(2).amax(dim=2)  # [B, K]
    keep = peak >= threshold
    keep[torch.arange(len(peak)), peak.argmax(dim=1)] = True
    return logits - 1e4 * (~keep[:, :, None, None]).to(logits.dtype)


def key_smoothing(logits: Tensor, keys: Tensor, temperature: float = 100.0) -> Tensor:
    """Smooth per-pixel class probabilities with the cosine affinity of the last block's keys.

    Each pixel's probability vector becomes the average of all pixels' vectors weighted by the
    (non-negative part of the) cosine similarity of their keys; the result is returned as
    log-probabilities so it can be arg-maxed or fed back as logits.
    """
    b, k, h, w = logits.shape
    if keys.shape[0] != b or keys.shape[-2:] != (h, w):
        raise ValueError(f"keys {tuple(keys.shape)} must match logits {tuple(logits.shape)} in batch and size")
    probs = (temperature * logits).softmax(dim=1).flatten(2)  # [B, K, N]
    feats = F.normalize(keys.flatten(2).float(), dim=1)  # [B, C, N]
    affinity = (feats.transpose(1, 2) @ feats).clamp_min(0)  # [B, N, N]
    affinity = affinity / affinity.sum(dim=2, keepdim=True).clamp_min(1e-6)
    smoothed = probs @ affinity.transpose(1, 2)  # [B, K, N]
    return smoothed.clamp_min(1e-12).log().reshape(b, k, h, w)
