"""OpenVocabMeanIoU against a per-class numpy computation of mmseg semantics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distill.metrics import OpenVocabMeanIoU


def _reference(preds, targets, n, unseen, ignore=255):
    inter, union = np.zeros(n), np.zeros(n)
    for p, t in zip(preds, targets, strict=True):
        p, t = p.numpy().ravel(), t.numpy().ravel()
        keep = t != ignore
        p, t = p[keep], t[keep]
        for c in range(n):
            inter[c] += np.sum((p == c) & (t == c))
            union[c] += np.sum((p == c) | (t == c))
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan) * 100
    seen = np.nanmean(np.delete(iou, unseen))
    uns = np.nanmean(iou[unseen])
    return iou, np.nanmean(iou), seen, uns, 2 * seen * uns / (seen + uns)


def test_matches_reference_over_several_batches():
    g = torch.Generator().manual_seed(0)
    n, unseen = 6, [2, 5]
    metric = OpenVocabMeanIoU(n, unseen)
    preds, targets = [], []
    for _ in range(3):
        t = torch.randint(0, n, (2, 9, 11), generator=g)
        t[torch.rand(t.shape, generator=g) < 0.1] = 255
        p = torch.where(torch.rand(t.shape, generator=g) < 0.6, t.clamp(max=n - 1), torch.randint(0, n, t.shape, generator=g))
        metric.update(p, t)
        preds.append(p)
        targets.append(t)
    out = metric.compute()
    iou, miou, seen, uns, h = _reference(preds, targets, n, unseen)
    np.testing.assert_allclose(out["IoU_per_class"].numpy(), iou, rtol=1e-5)
    assert out["mIoU"] == pytest.approx(miou)
    assert out["mIoU_seen"] == pytest.approx(seen)
    assert out["mIoU_unseen"] == pytest.approx(uns)
    assert out["hIoU"] == pytest.approx(h)


def test_absent_class_is_nan_and_left_out_of_means():
    metric = OpenVocabMeanIoU(4, [3])
    t = torch.tensor([[[0, 0, 1, 1]]])
    metric.update(torch.tensor([[[0, 1, 1, 1]]]), t)
    out = metric.compute()
    assert math.isnan(out["IoU_per_class"][2]) and math.isnan(out["IoU_per_class"][3])
    assert out["mIoU"] == pytest.approx((50 + 200 / 3) / 2)
    assert math.isnan(out["mIoU_unseen"])
    assert math.isnan(out["hIoU"])  # nothing unseen to evaluate: not 0 ("scored zero"), NaN ("no data")


def test_ignored_pixels_do_not_count_even_when_predicted():
    metric = OpenVocabMeanIoU(2, [1])
    metric.update(torch.tensor([[[1, 1]]]), torch.tensor([[[1, 255]]]))
    assert metric.compute()["IoU_per_class"][1] == pytest.approx(100.0)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"\[7\] are outside"):
        OpenVocabMeanIoU(5, [7])
    metric = OpenVocabMeanIoU(3, [2])
    with pytest.raises(ValueError, match="target holds class id 9"):
        metric.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 9))
    with pytest.raises(ValueError, match="same shape"):
        metric.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 3, dtype=torch.long))


def test_counts_computed_elsewhere_are_updates_torchmetrics_knows_of():
    """``update_counts`` (what ``ovdistill evaluate seg``'s workers hand over) goes through torchmetrics' update: no
    "compute before update" warning, and a later batch is not hidden behind the cached first result."""
    import warnings

    from distill.metrics.segmentation import iou_counts

    g = torch.Generator().manual_seed(3)
    batches = [(torch.randint(0, 4, (2, 8, 8), generator=g), torch.randint(0, 4, (2, 8, 8), generator=g)) for _ in range(2)]
    direct, counted = OpenVocabMeanIoU(4, [3]), OpenVocabMeanIoU(4, [3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i, (p, t) in enumerate(batches):
            direct.update(p, t)
            counted.update_counts(iou_counts(p, t, 4, 255))
            if i == 0:
                first = counted.compute()["mIoU"]
        a, b = counted.compute(), direct.compute()
    torch.testing.assert_close(a.pop("IoU_per_class"), b.pop("IoU_per_class"), equal_nan=True)
    assert a == b
    assert first != b["mIoU"]  # the second batch moved the figure, and compute() saw it
