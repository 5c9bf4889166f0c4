"""OpenVocabDetectionAP against pycocotools' COCOeval run category by category on a JSON round trip."""
from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from distill.metrics import LVISDetectionAP, OpenVocabDetectionAP

CLASSES = ["cat", "dog", "cow", "bus", "cup"]
NOVEL = [2, 4]


def random_dataset(seed: int, n_images: int = 12):
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for i in range(n_images):
        n = int(torch.randint(0, 5, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 60
        wh = torch.rand(n, 2, generator=g) * 30 + 4
        gt = torch.cat([xy, xy + wh], 1)
        labels = torch.randint(0, len(CLASSES), (n,), generator=g)
        crowd = (torch.rand(n, generator=g) < 0.1).long()
        # detections: jittered copies of the ground truth (some relabelled) plus false positives
        jit = gt + torch.randn(n, 4, generator=g) * 3
        m = int(torch.randint(0, 4, (1,), generator=g))
        fxy = torch.rand(m, 2, generator=g) * 60
        fp = torch.cat([fxy, fxy + torch.rand(m, 2, generator=g) * 20 + 2], 1)
        boxes = torch.cat([jit, fp])
        boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        dlabels = torch.cat([torch.where(torch.rand(n, generator=g) < 0.8, labels, (labels + 1) % len(CLASSES)),
                             torch.randint(0, len(CLASSES), (m,), generator=g)])
        preds.append({"boxes": boxes, "scores": torch.rand(n + m, generator=g), "labels": dlabels})
        targets.append({"boxes": gt, "labels": labels, "iscrowd": crowd, "image_id": 100 + i})
    return preds, targets


def reference(preds, targets, tmp_path):
    """Per-category AP from COCOeval.summarize() restricted to one category, via JSON files."""
    images = [{"id": t["image_id"], "width": 100, "height": 100} for t in targets]
    anns, dets = [], []
    for t in targets:
        for b, lab, c in zip(t["boxes"].tolist(), t["labels"].tolist(), t["iscrowd"].tolist(), strict=True):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": t["image_id"], "category_id": lab + 1,
                         "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": c})
    for p, t in zip(preds, targets, strict=True):
        for b, s, lab in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist(), strict=True):
            dets.append({"image_id": t["image_id"], "category_id": lab + 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s})
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]
    (tmp_path / "gt.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    ap, ap50 = {}, {}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "gt.json"))
        dt = gt.loadRes(str(tmp_path / "dt.json"))
        for k in range(len(CLASSES)):
            ev = COCOeval(gt, dt, "bbox")
            ev.params.catIds = [k + 1]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            ap[k], ap50[k] = ev.stats[0], ev.stats[1]
    return ap, ap50


def mean_valid(values: dict, ids) -> float:
    v = [values[k] for k in ids if values[k] > -1]
    return 100 * float(np.mean(v)) if v else math.nan


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_pycocotools_per_category_mean(seed, tmp_path):
    preds, targets = random_dataset(seed)
    metric = OpenVocabDetectionAP(CLASSES, NOVEL)
    metric.update(preds[:5], targets[:5])
    metric.update(preds[5:], targets[5:])
    out = metric.compute()
    ap, ap50 = reference(preds, targets, tmp_path)
    base = [k for k in range(len(CLASSES)) if k not in NOVEL]
    for key, ids in (("", range(len(CLASSES))), ("_base", base), ("_novel", NOVEL)):
        assert out[f"AP{key}"] == pytest.approx(mean_valid(ap, ids), abs=1e-9, nan_ok=True)
        assert out[f"AP50{key}"] == pytest.approx(mean_valid(ap50, ids), abs=1e-9, nan_ok=True)
    assert 0 < out["AP50"] < 100 and out["AP50"] >= out["AP"]
    fast = OpenVocabDetectionAP(CLASSES, NOVEL, backend="faster_coco_eval")
    fast.update(preds, targets)
    fast_out = fast.compute()
    for key in ("AP", "AP50", "AP_base", "AP50_base", "AP_novel", "AP50_novel"):
        assert fast_out[key] == pytest.approx(out[key], abs=1e-9), key


def test_duplicate_images_count_once_and_order_does_not_matter():
    preds, targets = random_dataset(3)
    once = OpenVocabDetectionAP(CLASSES, NOVEL)
    once.update(preds, targets)
    twice = OpenVocabDetectionAP(CLASSES, NOVEL)
    twice.update(preds[::-1], targets[::-1])
    twice.update(preds[:3], targets[:3])  # DistributedSampler padding repeats images
    a, b = once.compute(), twice.compute()
    for key in ("AP", "AP50", "AP_novel"):
        assert a[key] == pytest.approx(b[key], abs=1e-12)


def test_perfect_and_empty_detections():
    _, targets = random_dataset(4)
    perfect = [{"boxes": t["boxes"], "scores": torch.ones(len(t["labels"])), "labels": t["labels"]} for t in targets]
    metric = OpenVocabDetectionAP(CLASSES, NOVEL)
    metric.update(perfect, targets)
    assert metric.compute()["AP"] == pytest.approx(100.0)
    empty = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)} for _ in targets]
    metric = OpenVocabDetectionAP(CLASSES, NOVEL)
    metric.update(empty, targets)
    out = metric.compute()
    assert out["AP"] == 0.0 and out["AP50_novel"] == 0.0
    assert torch.isnan(out["AP_per_class"]).sum() == sum(
        1 for k in range(len(CLASSES)) if not any(((t["labels"] == k) & (t["iscrowd"] == 0)).any() for t in targets)
    )


def test_bad_input():
    with pytest.raises(ValueError, match="novel"):
        OpenVocabDetectionAP(CLASSES, [7])
    with pytest.raises(ValueError, match="backend"):
        OpenVocabDetectionAP(CLASSES, NOVEL, backend="detectron")
    metric = OpenVocabDetectionAP(CLASSES, NOVEL)
    with pytest.raises(ValueError, match=r"\[5\]"):
        metric.update([{"boxes": torch.zeros(1, 4), "scores": torch.ones(1), "labels": torch.tensor([5])}],
                      [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}])


def test_lvis_frequency_groups(tmp_path):
    """APr/APc/APf from the lvis evaluator; with only rare classes correct, APr is 100 and APf is 0."""
    freq = ["r", "c", "f", "r", "f"]
    cats = [{"id": 10 + k, "name": n, "frequency": f} for k, (n, f) in enumerate(zip(CLASSES, freq, strict=True))]
    _, targets = random_dataset(5)
    images = [{"id": t["image_id"], "width": 100, "height": 100, "neg_category_ids": [], "not_exhaustive_category_ids": []} for t in targets]
    anns = []
    for t in targets:
        for b, lab in zip(t["boxes"].tolist(), t["labels"].tolist(), strict=True):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": t["image_id"], "category_id": 10 + lab, "bbox": [b[0], b[1], w, h], "area": w * h})
    path = tmp_path / "lvis.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    metric = LVISDetectionAP(str(path))
    assert metric.novel == [0, 3]
    rare = [torch.isin(t["labels"], torch.tensor([0, 3])) for t in targets]
    metric.update([{"boxes": t["boxes"][r], "scores": torch.ones(int(r.sum())), "labels": t["labels"][r]}
                   for t, r in zip(targets, rare, strict=True)],
                  [{**t, "iscrowd": torch.zeros(len(t["labels"]))} for t in targets])
    out = metric.compute()
    assert out["APr"] == pytest.approx(100.0)
    assert out["APf"] == pytest.approx(0.0)
    assert out["AP"] == pytest.approx((2 * 100.0) / 5, abs=1e-6)
