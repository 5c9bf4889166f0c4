"""Pseudo labels for novel classes as a COCO instances JSON (inspectable with any COCO tool, and read back
by the detection data module through ``pseudo_labels``).

Round one: the teacher labels class-agnostic proposals of a base-trained RPN (``teacher_label_batch``), first
moved by the same detector's class-agnostic box regression (``refine``: on the demo world's val images it lifts the
labeller's F1 from 32 to 42, because the teacher names an object on a box that holds half of it);
later rounds: a trained detector labels the images itself (``detector_label_batch``). Gold boxes, which
are never relabelled, are the dataset's own annotations only — never an earlier round's pseudo boxes.
The JSON uses the ground truth's category ids and records its round, labeller and settings in
``info.ovdistill``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.ops import remove_small_boxes

from distill.pseudo_boxes import select_pseudo_boxes, teacher_box_scores
from distill.regions import teacher_region_embeddings
from pipelines.data.atomic import save_json
from teachers.prompts import text_embeddings

from .batches import batches


def gold_boxes(dataset, image_id: int):
    """The dataset's own (base) boxes of an image, without any earlier round's pseudo boxes."""
    return dataset.target(image_id, pseudo=False)["boxes"]


def to_coco(dataset, class_names: list[str], novel: list[str], found: list[dict], labeller: str, settings: dict, round_: int) -> dict:
    """A COCO JSON in the ground truth's own category ids, so any COCO tool reads it right."""
    images = [
        {"id": i, **{k: dataset.coco.imgs[i][k] for k in ("file_name", "coco_url", "height", "width") if k in dataset.coco.imgs[i]}}
        for i in dataset.ids
    ]
    gt_id = {c["name"]: c["id"] for c in dataset.coco.dataset["categories"]}
    cats = [{"id": gt_id[c], "name": c} for c in novel]
    anns = []
    for item in found:
        for b, s, lab in zip(item["boxes"].tolist(), item["scores"].tolist(), item["labels"].tolist(), strict=True):
            anns.append({
                "id": len(anns) + 1, "image_id": int(item["image_id"]), "category_id": gt_id[class_names[lab]],
                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1]), "iscrowd": 0, "score": s,
            })
    info = {
        "description": f"ovdistill pseudo labels, round {round_}, by {labeller}",
        "ovdistill": {"round": round_, "labeller": labeller, "source": str(dataset.ann_file), **settings},
    }
    return {"info": info, "images": images, "annotations": anns, "categories": cats}


def _select(image_id, boxes, scores, labels, gold, target: list[int], s: dict) -> dict:
    b, sc, lab = select_pseudo_boxes(
        boxes.cpu(), scores.cpu(), labels.cpu(), target, gold, s["score_threshold"], s["top_k"], s["nms_iou"], s["gold_iou"]
    )
    return {"image_id": int(image_id), "boxes": b, "scores": sc, "labels": lab}


@torch.no_grad()
def teacher_label_batch(teacher, proposer, text, target: list[int], dataset, images, targets, settings: dict,
                        proposed: tuple | None = None) -> list[dict]:
    """Round one for a batch: the teacher classifies the proposer's top proposals (1x + 1.5x crops), refined by the
    proposer's box regression when ``settings["refine"]``. ``proposed``: ``proposer.propose(images,
    keep_features=True)``'s output when another step has already run it on these images."""
    n = settings["top_proposals"]
    boxes, objectness, features = proposed or proposer.propose(images, keep_features=True)
    # a box's score is a class probability times its objectness: one below the threshold can never pass, so the
    # teacher (the cost of this pass) does not embed it
    keep = [o[:n] >= settings["score_threshold"] for o in objectness]
    boxes = [b[:n][k] for b, k in zip(boxes, keep, strict=True)]
    objectness = [o[:n][k] for o, k in zip(objectness, keep, strict=True)]
    if settings.get("refine", False):
        boxes = proposer.refine_boxes(images, boxes, features=features)  # the proposals' backbone pass, not a second one
        # a box moved off the image is clipped to nothing: dropped, as torchvision drops its own small detections
        kept = [remove_small_boxes(b, 1e-2) for b in boxes]
        boxes = [b[k] for b, k in zip(boxes, kept, strict=True)]
        objectness = [o[k] for o, k in zip(objectness, kept, strict=True)]
    emb = teacher_region_embeddings(teacher, images, boxes).split([len(b) for b in boxes])
    out = []
    for b, o, e, t in zip(boxes, objectness, emb, targets, strict=True):
        scores, labels = teacher_box_scores(e.to(text), text, o.to(text), settings["scale"])
        out.append(_select(t["image_id"], b, scores, labels, gold_boxes(dataset, int(t["image_id"])), target, settings))
    return out


@torch.no_grad()
def detector_label_batch(module, dataset, images, targets, settings: dict) -> list[dict]:
    """A later round for a batch: a trained detection module's own novel-class detections."""
    target = list(module.novel_ids)
    return [
        _select(t["image_id"], p["boxes"], p["scores"], p["labels"], gold_boxes(dataset, int(t["image_id"])), target, settings)
        for p, t in zip(module.detect(images), targets, strict=True)
    ]


def label_vocabulary(teacher, class_names: list[str], novel: list[str], templates="simple", prompts: str | None = None,
                     text=None) -> tuple:
    """Round one's class embeddings (``text`` when already computed) and the indices of the classes it labels."""
    text = text_embeddings(teacher, class_names, templates, prompts) if text is None else text
    return text, [class_names.index(c) for c in novel]


def teacher_settings(score_threshold=0.5, top_k=5, nms_iou=0.5, gold_iou=0.5, scale=100.0, top_proposals=100, refine=False) -> dict:
    return {"score_threshold": score_threshold, "top_k": top_k, "nms_iou": nms_iou, "gold_iou": gold_iou, "scale": scale,
            "top_proposals": top_proposals, "refine": refine}


@torch.no_grad()
def teacher_pseudo_labels(
    teacher, proposer, dataset, class_names: list[str], novel: list[str], templates="simple", top_proposals: int = 100,
    score_threshold: float = 0.5, top_k: int = 5, nms_iou: float = 0.5, gold_iou: float = 0.5, scale: float = 100.0,
    batch_size: int = 16, progress=None, proposals: dict | None = None, prompts: str | None = None, text=None, refine: bool = True,
) -> dict:
    """Round one, in process: the teacher classifies proposals over all class names.

    ``proposals``: a loaded proposals table (``load_proposals``) with ``teacher_regions``; its stored
    boxes, objectness and teacher embeddings are reused instead of running the proposer and the teacher.
    ``prompts``: a learned prompt file replacing the templates; ``text``: class embeddings already computed.
    ``refine``: move each proposal by the proposer's box regression before the teacher sees it (needs the proposer
    and the teacher, so not with a stored ``proposals`` table, whose boxes are used as stored).
    """
    if refine and proposals is not None:
        raise ValueError("refine=True moves proposals with the proposer's box head and re-embeds them: it cannot read a stored "
                         "proposals table (pass refine=False to label the stored boxes as they are)")
    text, target = label_vocabulary(teacher, class_names, novel, templates, prompts, text)
    settings = teacher_settings(score_threshold, top_k, nms_iou, gold_iou, scale, top_proposals, refine)
    found = []
    if proposals is not None:
        if "teacher_regions" not in proposals:
            raise ValueError("the proposals table has no teacher_regions: compute it with a teacher")
        for image_id in dataset.ids:
            n = top_proposals
            scores, labels = teacher_box_scores(
                proposals["teacher_regions"][image_id][:n].to(text), text, proposals["objectness"][image_id][:n].to(text), scale
            )
            found.append(_select(image_id, proposals["proposals"][image_id][:n], scores, labels, gold_boxes(dataset, image_id), target, settings))
    else:
        proposer.eval()
        for images, targets in batches(dataset, batch_size, progress):
            found += teacher_label_batch(teacher, proposer, text, target, dataset, images, targets, settings)
    return to_coco(dataset, class_names, novel, found, getattr(teacher, "name", "teacher"), settings, 1)


@torch.no_grad()
def detector_pseudo_labels(
    module, dataset, score_threshold: float = 0.5, top_k: int = 5, nms_iou: float = 0.5, gold_iou: float = 0.5,
    batch_size: int = 16, progress=None, round_: int = 2,
) -> dict:
    """A later round, in process: a trained detection module (``detect``) labels the images."""
    module.eval()
    settings = teacher_settings(score_threshold, top_k, nms_iou, gold_iou)
    found = []
    for images, targets in batches(dataset, batch_size, progress):
        found += detector_label_batch(module, dataset, [i.to(module.device) for i in images], targets, settings)
    return to_coco(dataset, module.class_names, module.novel_names, found, type(module).__name__, settings, round_)


def save_pseudo_labels(coco: dict, path: str | Path) -> Path:
    return save_json(coco, path)
