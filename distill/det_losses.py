"""Losses and scoring rules of open-vocabulary detection distillation (plain functions; the modules are recipes)."""
from __future__ import annotations

import torch
from torch import Tensor


def remap_labels(labels: Tensor, train_classes: list[int], class_names: list[str], image_id=None) -> Tensor:
    """Vocabulary indices -> torchvision's ``1..K`` over ``train_classes`` (0 is background); a label outside
    the training vocabulary is an error naming the image and the classes."""
    lut = torch.full((len(class_names),), -1, dtype=torch.long, device=labels.device)
    lut[train_classes] = torch.arange(1, len(train_classes) + 1, device=labels.device)
    out = lut[labels]
    if (out < 0).any():
        bad = sorted({class_names[i] for i in labels[out < 0].tolist()})
        raise ValueError(f"image {image_id}: training boxes of classes {bad} outside the training vocabulary")
    return out


def vild_image_loss(region_embeddings: Tensor, teacher_embeddings: Tensor) -> Tensor:
    """ViLD-image: L1 between normalised student and teacher region embeddings, summed over D, averaged over regions."""
    if region_embeddings.shape != teacher_embeddings.shape:
        raise ValueError(f"student regions {tuple(region_embeddings.shape)} vs teacher regions {tuple(teacher_embeddings.shape)}")
    if not len(region_embeddings):
        return region_embeddings.sum()
    return (region_embeddings - teacher_embeddings).abs().sum(-1).mean()


def crop_class_scores(region_embeddings: Tensor, text: Tensor, objectness: Tensor, scale: float = 100.0) -> Tensor:
    """CLIP-on-crops scores ``[N, K]``: ``softmax(scale · cos(region, text))`` over the classes times objectness."""
    return (scale * region_embeddings @ text.T).softmax(-1) * objectness[:, None]
