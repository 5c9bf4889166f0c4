"""Losses and pseudo-label rules of open-vocabulary segmentation distillation (plain functions)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def teacher_signal(dense: Tensor) -> Tensor:
    """``[B, h, w]`` True where a teacher map ``[B, D, h, w]`` has a vector: a cached map of an augmented view is
    zero over padding, where the teacher saw no image."""
    return dense.abs().sum(dim=1) > 0


def dense_feature_loss(student: Tensor, teacher: Tensor, kind: str = "cosine") -> Tensor:
    """Distance between student pixel embeddings ``[B,D,H,W]`` and a teacher dense map ``[B,D,h,w]``.

    The student map is area-averaged to the teacher's grid (a teacher patch embeds a region) and
    re-normalised; ``cosine`` is ``1 - cos`` and ``l1`` the mean absolute difference of unit vectors.
    """
    if student.shape[1] != teacher.shape[1]:
        raise ValueError(f"student embeddings are {student.shape[1]}-d, teacher dense features {teacher.shape[1]}-d")
    pooled = F.normalize(F.adaptive_avg_pool2d(student, teacher.shape[-2:]), dim=1)
    target = F.normalize(teacher.to(pooled.dtype), dim=1)
    valid = teacher_signal(teacher).to(pooled.dtype)
    if kind == "cosine":
        per_cell = 1 - (pooled * target).sum(dim=1)
    elif kind == "l1":
        per_cell = (pooled - target).abs().sum(dim=1)
    else:
        raise ValueError(f"dense loss kind={kind!r}; expected 'cosine' or 'l1'")
    return (per_cell * valid).sum() / valid.sum().clamp(min=1)


def remap_to_subset(target: Tensor, subset: list[int], ignore_index: int = 255) -> Tensor:
    """Map class ids to positions in ``subset``; ids outside it become ``ignore_index``."""
    lut = torch.full((max(int(target.max()) + 1, max(subset) + 1, ignore_index + 1),), ignore_index, dtype=torch.long, device=target.device)
    lut[torch.tensor(subset, device=target.device)] = torch.arange(len(subset), device=target.device)
    return lut[target.long()]


def pseudo_labels(
    target: Tensor,
    scores: Tensor,
    unseen: list[int],
    *,
    transductive: bool = True,
    threshold: float = 0.0,
    ignore_index: int = 255,
) -> Tensor:
    """MaskCLIP+ targets from per-pixel class scores ``[B,K,H,W]`` (teacher logits or the student's own).

    transductive: only pixels the annotation leaves ignored (unseen or unlabelled) get a pseudo label,
    the arg-max over the **unseen** classes; annotated pixels keep their label.
    annotation-free (``transductive=False``): every pixel gets the arg-max over all classes.
    Pixels whose winning softmax probability (over the classes competing there) is below
    ``threshold`` become ``ignore_index``.
    """
    if transductive:
        idx = torch.tensor(unseen, device=scores.device)
        probs = scores.index_select(1, idx).softmax(dim=1)
        conf, arg = probs.max(dim=1)
        label = idx[arg]
        fill = target == ignore_index
        out = torch.where(fill, label, target.long())
        low = fill & (conf < threshold)
    else:
        conf, out = scores.softmax(dim=1).max(dim=1)
        low = conf < threshold
    return out.masked_fill(low, ignore_index)
