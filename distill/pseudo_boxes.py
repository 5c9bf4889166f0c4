"""Pseudo boxes (GLIP / PB-OVD style): a labeller scores class-agnostic proposals against every class name;
confident boxes of the target (novel) classes become training labels.

``select_pseudo_boxes`` is the selection rule shared by both labellers: the teacher (region embeddings
of proposals) in round one, a trained student (its detections) in later rounds.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_iou

from .det_losses import crop_class_scores


def select_pseudo_boxes(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    target_classes: list[int],
    gold_boxes: Tensor | None = None,
    score_threshold: float = 0.5,
    top_k: int = 5,
    nms_iou: float = 0.5,
    gold_iou: float = 0.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """Keep boxes whose label is a target class, score ≥ threshold, overlapping no gold box by ≥ ``gold_iou``
    (an annotated base object must not be relabelled), then per-class NMS and the ``top_k`` best."""
    keep = torch.isin(labels, torch.as_tensor(target_classes, device=labels.device)) & (scores >= score_threshold)
    if gold_boxes is not None and len(gold_boxes) and keep.any():
        keep &= box_iou(boxes, gold_boxes.to(boxes)).max(1).values < gold_iou
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    order = batched_nms(boxes, scores, labels, nms_iou)[:top_k]
    return boxes[order], scores[order], labels[order]


def teacher_box_scores(region_embeddings: Tensor, text: Tensor, objectness: Tensor, scale: float = 100.0) -> tuple[Tensor, Tensor]:
    """(score, label) per proposal: the teacher's top class over *all* names times the proposal's objectness."""
    return crop_class_scores(region_embeddings, text, objectness, scale).max(1)
