"""ViLD-ensemble's blend of two heads' class probabilities, shared by the detector's RoI predictor and the segmenter.

Base (seen) classes trust the text head, novel classes the head distilled from the teacher's image embeddings:
base ``p_text^λ · p_image^(1-λ)``, novel ``p_text^(1-λ) · p_image^λ`` (ViLD, λ = 2/3). Not renormalised.
"""
from __future__ import annotations

import torch
from torch import Tensor


def vild_blend(p_text: Tensor, p_image: Tensor, novel: Tensor, lam: float, dim: int = -1) -> Tensor:
    """Blend probabilities of the same classes along ``dim``; ``novel`` is a ``[K]`` boolean mask of that axis."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"ensemble_lambda must be in [0, 1], got {lam}")
    shape = [1] * p_text.dim()
    shape[dim] = -1
    w_text = torch.where(novel.to(p_text.device), 1 - lam, lam).to(p_text.dtype).view(shape)
    return p_text**w_text * p_image ** (1 - w_text)
