"""Write pseudo labels for novel classes as a COCO instances JSON (inspectable, and read back by the
detection data module through ``pseudo_labels``).

Round one: the teacher labels class-agnostic proposals of a base-trained RPN (``teacher_pseudo_labels``);
later rounds: a trained detector labels the images itself (``detector_pseudo_labels``). Each
annotation keeps its ``score`` and the labeller's name in ``info``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from distill.pseudo_boxes import select_pseudo_boxes, teacher_box_scores
from distill.regions import teacher_region_embeddings

from .atomic import save_json


def _batches(dataset, batch_size: int, progress=None):
    order = range(0, len(dataset), batch_size)
    for start in progress(order) if progress else order:
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        yield [img for img, _ in items], [t for _, t in items]


def _coco(dataset, class_names: list[str], novel: list[str], found: list, labeller: str, settings: dict) -> dict:
    images = [{"id": i, **{k: dataset.coco.imgs[i][k] for k in ("file_name", "height", "width") if k in dataset.coco.imgs[i]}} for i in dataset.ids]
    cats = [{"id": class_names.index(c) + 1, "name": c} for c in novel]
    anns = []
    for image_id, boxes, scores, labels in found:
        for b, s, lab in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
            anns.append({
                "id": len(anns) + 1, "image_id": image_id, "category_id": lab + 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                "area": (b[2] - b[0]) * (b[3] - b[1]), "iscrowd": 0, "score": s,
            })
    return {"info": {"description": f"ovdistill pseudo labels by {labeller}", **settings}, "images": images, "annotations": anns, "categories": cats}


@torch.no_grad()
def teacher_pseudo_labels(
    teacher, proposer, dataset, class_names: list[str], novel: list[str], templates="simple", top_proposals: int = 100,
    score_threshold: float = 0.5, top_k: int = 5, nms_iou: float = 0.5, gold_iou: float = 0.5, scale: float = 100.0,
    batch_size: int = 16, progress=None, proposals: dict | None = None,
) -> dict:
    """The teacher classifies the proposer's proposals (1x + 1.5x crops) over all class names.

    ``proposals``: a loaded proposals table (``load_proposals``) with ``teacher_regions``; its stored
    boxes, objectness and teacher embeddings are reused instead of running the proposer and the teacher.
    """
    text = teacher.encode_text(class_names, templates)
    target = [class_names.index(c) for c in novel]
    settings = {"score_threshold": score_threshold, "top_k": top_k, "nms_iou": nms_iou, "gold_iou": gold_iou, "scale": scale}
    found = []

    def select(image_id, boxes, objectness, emb, gold):
        scores, labels = teacher_box_scores(emb.to(text), text, objectness.to(text), scale)
        found.append((image_id, *select_pseudo_boxes(boxes, scores, labels, target, gold, score_threshold, top_k, nms_iou, gold_iou)))

    if proposals is not None:
        if "teacher_regions" not in proposals:
            raise ValueError("the proposals table has no teacher_regions: compute it with a teacher")
        for image_id in dataset.ids:
            n = top_proposals
            select(image_id, proposals["proposals"][image_id][:n], proposals["objectness"][image_id][:n],
                   proposals["teacher_regions"][image_id][:n], dataset.target(image_id)["boxes"])
        return _coco(dataset, class_names, novel, found, getattr(teacher, "name", "teacher"), settings)
    proposer.eval()
    for images, targets in _batches(dataset, batch_size, progress):
        boxes, objectness = proposer.propose(images)
        boxes = [b[:top_proposals] for b in boxes]
        emb = teacher_region_embeddings(teacher, images, boxes).split([len(b) for b in boxes])
        for b, o, e, t in zip(boxes, objectness, emb, targets):
            select(t["image_id"], b, o[:top_proposals], e, t["boxes"])
    return _coco(dataset, class_names, novel, found, getattr(teacher, "name", "teacher"), settings)


@torch.no_grad()
def detector_pseudo_labels(
    module, dataset, score_threshold: float = 0.5, top_k: int = 5, nms_iou: float = 0.5, gold_iou: float = 0.5,
    batch_size: int = 16, progress=None,
) -> dict:
    """A trained detection module (``detect``) labels the images: the next self-training round."""
    module.eval()
    target = list(module.novel_ids)
    found = []
    for images, targets in _batches(dataset, batch_size, progress):
        for p, t in zip(module.detect([i.to(module.device) for i in images]), targets):
            found.append((t["image_id"], *select_pseudo_boxes(p["boxes"].cpu(), p["scores"].cpu(), p["labels"].cpu(), target, t["boxes"], score_threshold, top_k, nms_iou, gold_iou)))
    settings = {"score_threshold": score_threshold, "top_k": top_k, "nms_iou": nms_iou, "gold_iou": gold_iou}
    return _coco(dataset, module.class_names, module.novel_names, found, type(module).__name__, settings)


def save_pseudo_labels(coco: dict, path: str | Path) -> Path:
    return save_json(coco, path)

