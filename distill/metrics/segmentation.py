"""``OpenVocabMeanIoU``: mmsegmentation-style mIoU split into seen and unseen classes.

Intersections and unions are summed over the whole dataset (and across DDP processes, through
torchmetrics' state sync); pixels labelled ``ignore_index`` do not count; a class with zero union is
NaN and left out of every mean; hIoU is the harmonic mean of seen and unseen mIoU.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric


def _nanmean(x: Tensor) -> float:
    x = x[~x.isnan()]
    return float(x.mean()) if x.numel() else float("nan")


def iou_counts(preds: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """``[3, K]`` per-class intersection, predicted area and target area over the non-ignored pixels."""
    if preds.shape != target.shape:
        raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} must have the same shape")
    if preds.is_floating_point() or target.is_floating_point():
        raise ValueError("preds and target must be integer class maps [B,H,W] (take argmax of logits first)")
    t, p = target.long(), preds.long()
    valid = t != ignore_index
    # range checks as reductions (min / max), not element-wise masks: they cost a fraction of the count
    for what, v in (("target", torch.where(valid, t, 0)), ("preds", torch.where(valid, p, 0))):
        if v.numel() and (int(v.min()) < 0 or int(v.max()) >= num_classes):
            bad = v[(v < 0) | (v >= num_classes)]
            raise ValueError(f"{what} holds class id {int(bad[0])} outside [0, {num_classes}) and not ignore_index={ignore_index}")
    # ignored pixels go to one extra bin (no boolean indexing: it costs more than the count itself)
    k2 = num_classes * num_classes
    joint = torch.bincount(torch.where(valid, t * num_classes + p, k2).flatten(), minlength=k2 + 1)[:k2].view(num_classes, num_classes)
    return torch.stack([joint.diagonal(), joint.sum(0), joint.sum(1)])


class OpenVocabMeanIoU(Metric):
    full_state_update = False
    higher_is_better = True

    def __init__(self, num_classes: int, unseen: list[int], ignore_index: int = 255, **kwargs):
        super().__init__(**kwargs)
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        bad = [c for c in unseen if not 0 <= int(c) < num_classes]
        if bad:
            raise ValueError(f"unseen class ids {bad} are outside [0, {num_classes})")
        if len(set(unseen)) != len(unseen):
            raise ValueError(f"unseen class ids repeat: {unseen}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        unseen_mask = torch.zeros(num_classes, dtype=torch.bool)
        unseen_mask[list(unseen)] = True
        self.register_buffer("unseen_mask", unseen_mask, persistent=False)
        self.add_state("intersection", torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("union", torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: Tensor | None = None, target: Tensor | None = None, *, counts: Tensor | None = None) -> None:
        """Label maps ``preds`` / ``target``, or their ``iou_counts`` computed elsewhere (``counts``)."""
        if counts is None:
            counts = iou_counts(preds, target, self.num_classes, self.ignore_index)
        inter, area_p, area_t = counts.double()
        self.intersection += inter
        self.union += area_p + area_t - inter

    def update_counts(self, counts: Tensor) -> None:
        """Add ``iou_counts`` computed elsewhere (e.g. in data-loader workers, as ``ovdistill evaluate seg`` does); through
        ``update``, so torchmetrics counts it as one (``compute`` then neither warns nor serves a cached result)."""
        self.update(counts=counts)

    def compute(self) -> dict:
        iou = torch.where(self.union > 0, self.intersection / self.union.clamp_min(1), torch.full_like(self.union, float("nan")))
        iou = iou * 100
        seen = _nanmean(iou[~self.unseen_mask])
        unseen = _nanmean(iou[self.unseen_mask])
        # harmonic mean: NaN when either side has nothing to evaluate (not 0, which would read as "scored zero")
        if math.isnan(seen) or math.isnan(unseen):
            h = math.nan
        else:
            h = 2 * seen * unseen / (seen + unseen) if seen + unseen > 0 else 0.0
        return {"mIoU": _nanmean(iou), "mIoU_seen": seen, "mIoU_unseen": unseen, "hIoU": h, "IoU_per_class": iou.float()}
