"""How good is a round of teacher pseudo boxes? Label a split whose novel boxes are known, as if it were training data.

The labeller sees the split as the training split looks (base boxes gold, novel ones unknown); its pseudo boxes are
then matched to the split's novel ground truth: precision and recall at IoU 0.5, same class. Used to choose the
labeller's settings on val (``benchmarks/choose_on_val.py``) and by the transfer test to show that the teacher,
not the detector alone, names the novel objects.
"""
from __future__ import annotations

import torch
from torchvision.ops import box_iou

from pipelines.offline.pseudo_labels import teacher_pseudo_labels


def pseudo_box_quality(teacher, proposer, dm, split: str, **labeller) -> tuple[float, float]:
    """Precision / recall (%) of round-one teacher pseudo boxes on ``split`` of a detection data module;
    ``labeller``: ``teacher_pseudo_labels`` settings (score_threshold, gold_iou, top_proposals, refine, ...)."""
    seen_as_train = dm.dataset(split)
    novel_ids = [dm.class_names.index(c) for c in dm.novel]
    seen_as_train.label_of = {cid: k for cid, k in seen_as_train.label_of.items() if k not in novel_ids}
    coco = teacher_pseudo_labels(teacher, proposer, seen_as_train, dm.class_names, dm.novel, **labeller)
    full = dm.dataset(split)
    name_of = {c["id"]: c["name"] for c in coco["categories"]}
    by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    tp = n_gt = 0
    for image_id in full.ids:
        t = full.target(image_id)
        gt = {c: t["boxes"][t["labels"] == dm.class_names.index(c)] for c in dm.novel}
        n_gt += sum(len(b) for b in gt.values())
        for a in by_image.get(image_id, []):
            x, y, w, h = a["bbox"]
            g = gt[name_of[a["category_id"]]]
            tp += int(len(g) > 0 and float(box_iou(torch.tensor([[x, y, x + w, y + h]]), g).max()) >= 0.5)
    return 100 * tp / max(len(coco["annotations"]), 1), 100 * tp / max(n_gt, 1)
