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

    def update(self, preds: Tensor, target: Tensor) -> None:
        if preds.shape != target.shape:
            raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} must have the same shape")
        if preds.is_floating_point() or target.is_floating_point():
            raise ValueError("preds and target must be integer class maps [B,H,W] (take argmax of logits first)")
        valid = target != self.ignore_index
        t, p = target[valid].long(), preds[valid].long()
        for what, v in (("target", t), ("preds", p)):
            if v.numel() and (v.min() < 0 or v.max() >= self.num_classes):
                bad = v[(v < 0) | (v >= self.num_classes)][0]
                raise ValueError(
                    f"{what} holds class id {int(bad)} outside [0, {self.num_classes}) and not ignore_index={self.ignore_index}"
                )
        n = self.num_classes
        inter = torch.bincount(t[p == t], minlength=n).double()
        area_p = torch.bincount(p, minlength=n).double()
        area_t = torch.bincount(t, minlength=n).double()
        self.intersection += inter
        self.union += area_p + area_t - inter

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
