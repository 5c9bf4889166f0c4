"""Open-vocabulary detection AP: COCOeval (pycocotools or faster-coco-eval) averaged over base / novel / all.

Detections and ground truth are kept as flat tensors (torchmetrics ``cat`` states, so DDP sync gathers
them whatever each process saw) tagged with the image they belong to. ``compute()`` builds COCO objects
in memory and runs the evaluator once; a category's AP is read from ``eval["precision"]`` exactly as
``COCOeval.summarize`` averages it (all recall points, area ``all``, the last max-detections setting),
and subset APs are means over the categories of the subset that have ground truth (OV-COCO / LVIS
convention). Images are identified by ``targets[i]["image_id"]`` when given; an image seen twice (the
padding ``DistributedSampler`` adds) counts once. States live on the metric's device (the module's), as
torchmetrics' own do: NCCL gathers only GPU tensors.
"""
from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torchmetrics import Metric

_STATES = {
    "det_boxes": 4, "det_scores": 0, "det_labels": 0, "det_uid": 0,
    "gt_boxes": 4, "gt_labels": 0, "gt_crowd": 0, "gt_uid": 0,
    "img_uid": 0, "img_id": 0,
}


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _xywh(boxes: Tensor) -> list[list[float]]:
    b = boxes.double()
    return torch.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1).tolist()


class _DetectionStore(Metric):
    """Collects detections / ground truth per image (torchmetrics detection format) for an evaluator."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        for name in _STATES:
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self._seen = 0

    def _check(self, labels: Tensor, what: str) -> None:
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"{what} labels must be class indices in [0, {self.num_classes}); got {labels.unique().tolist()}")

    def update(self, preds: list[dict], targets: list[dict]) -> None:
        if len(preds) != len(targets):
            raise ValueError(f"{len(preds)} predictions for {len(targets)} targets")
        rank, world = _rank_and_world()
        dev = self.device  # states stay on the metric's device: NCCL gathers only GPU tensors
        for p, t in zip(preds, targets, strict=True):
            uid = self._seen * world + rank
            self._seen += 1
            image_id = int(t["image_id"]) if "image_id" in t else -(uid + 1)
            boxes, labels = p["boxes"].detach().reshape(-1, 4).float().to(dev), p["labels"].detach().reshape(-1).long().to(dev)
            gboxes, glabels = t["boxes"].detach().reshape(-1, 4).float().to(dev), t["labels"].detach().reshape(-1).long().to(dev)
            self._check(labels, "predicted")
            self._check(glabels, "target")
            crowd = t.get("iscrowd", torch.zeros(len(glabels)))
            self.det_boxes.append(boxes)
            self.det_scores.append(p["scores"].detach().reshape(-1).float().to(dev))
            self.det_labels.append(labels)
            self.det_uid.append(torch.full((len(labels),), uid, dtype=torch.long, device=dev))
            self.gt_boxes.append(gboxes)
            self.gt_labels.append(glabels)
            self.gt_crowd.append(torch.as_tensor(crowd).reshape(-1).long().to(dev))
            self.gt_uid.append(torch.full((len(glabels),), uid, dtype=torch.long, device=dev))
            self.img_uid.append(torch.tensor([uid], device=dev))
            self.img_id.append(torch.tensor([image_id], device=dev))

    def _collected(self) -> dict[str, Tensor]:
        def cat(x, width):
            if isinstance(x, Tensor):
                return x
            if not x:
                return torch.zeros((0, 4) if width else (0,))
            return torch.cat(x)

        return {name: cat(getattr(self, name), width) for name, width in _STATES.items()}

    def coco_inputs(self) -> tuple[dict, list[dict], list[int]]:
        """(ground-truth dataset dict, detection list, evaluated image ids); category id = class index + 1."""
        s = self._collected()
        first: dict[int, int] = {}
        for uid, iid in zip(s["img_uid"].tolist(), s["img_id"].tolist(), strict=True):
            first.setdefault(iid, uid)
        keep_uid = {uid: iid for iid, uid in first.items()}
        images = [{"id": iid, "height": 0, "width": 0} for iid in sorted(first)]
        anns, dets = [], []
        for box, label, crowd, uid in zip(_xywh(s["gt_boxes"]), s["gt_labels"].tolist(), s["gt_crowd"].tolist(), s["gt_uid"].tolist(), strict=True):
            if uid in keep_uid:
                anns.append({
                    "id": len(anns) + 1, "image_id": keep_uid[uid], "category_id": label + 1, "bbox": box,
                    "area": box[2] * box[3], "iscrowd": int(crowd),
                })
        scored = zip(_xywh(s["det_boxes"]), s["det_scores"].tolist(), s["det_labels"].tolist(), s["det_uid"].tolist(), strict=True)
        for box, score, label, uid in scored:
            if uid in keep_uid:
                dets.append({"image_id": keep_uid[uid], "category_id": label + 1, "bbox": box, "score": score})
        cats = [{"id": k + 1, "name": str(k)} for k in range(self.num_classes)]
        return {"images": images, "annotations": anns, "categories": cats}, dets, sorted(first)


def coco_api(backend: str = "pycocotools"):
    """``(COCO, COCOeval)`` of pycocotools or faster-coco-eval (the same numbers, faster)."""
    if backend == "faster_coco_eval":
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    elif backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    else:
        raise ValueError(f"backend must be 'pycocotools' or 'faster_coco_eval', got {backend!r}")
    return COCO, COCOeval


def per_category_ap(precision: np.ndarray, iou_index: int | None = None) -> np.ndarray:
    """AP per category from COCOeval's ``precision[T, R, K, A, M]`` (area all, last maxDets), NaN without GT."""
    p = precision[:, :, :, 0, -1] if iou_index is None else precision[iou_index : iou_index + 1, :, :, 0, -1]
    out = np.full(p.shape[2], np.nan)
    for k in range(p.shape[2]):
        valid = p[:, :, k][p[:, :, k] > -1]
        if valid.size:
            out[k] = float(valid.mean())
    return out


def ov_ap_summary(ap: np.ndarray, ap50: np.ndarray, base: list[int], novel: list[int]) -> dict:
    """AP / AP50 (percent) over all, base and novel categories from per-category AP (``per_category_ap``):
    the mean over the categories with ground truth (the OV-COCO / LVIS convention; over all categories it
    equals ``COCOeval.summarize``)."""
    every = list(range(len(ap)))
    return {
        "AP": _mean(ap, every), "AP50": _mean(ap50, every),
        "AP_base": _mean(ap, base), "AP50_base": _mean(ap50, base),
        "AP_novel": _mean(ap, novel), "AP50_novel": _mean(ap50, novel),
        "AP_per_class": ap, "AP50_per_class": ap50,
    }


def _mean(values: np.ndarray, ids: list[int]) -> float:
    v = values[ids] if ids else np.array([])
    v = v[~np.isnan(v)]
    return float(v.mean() * 100) if v.size else math.nan


class OpenVocabDetectionAP(_DetectionStore):
    """COCO box AP / AP50 over all, base and novel classes (percent); ``AP*_per_class`` in [0, 1], NaN without GT.

    ``labels`` in ``preds`` / ``targets`` are indices into ``class_names``. ``backend`` is ``pycocotools`` or
    ``faster_coco_eval`` (identical numbers); ``max_detections`` per image (COCO 100).
    """

    def __init__(self, class_names: list[str], novel: list[int], backend: str = "pycocotools", max_detections: int = 100, **kwargs):
        if not class_names:
            raise ValueError("class_names is empty")
        bad = [k for k in novel if not 0 <= k < len(class_names)]
        if bad:
            raise ValueError(f"novel class indices {bad} outside [0, {len(class_names)})")
        if backend not in ("pycocotools", "faster_coco_eval"):
            raise ValueError(f"backend must be 'pycocotools' or 'faster_coco_eval', got {backend!r}")
        super().__init__(len(class_names), **kwargs)
        self.class_names, self.novel = list(class_names), sorted(set(novel))
        self.base = [k for k in range(len(class_names)) if k not in self.novel]
        self.backend, self.max_detections = backend, max_detections

    def _evaluate(self, gt: dict, dets: list[dict], image_ids: list[int]) -> np.ndarray:
        COCO, COCOeval = coco_api(self.backend)
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO()
            coco_gt.dataset = gt
            coco_gt.createIndex()
            coco_dt = coco_gt.loadRes(dets)
            ev = COCOeval(coco_gt, coco_dt, "bbox")
            ev.params.imgIds = image_ids
            ev.params.catIds = [c["id"] for c in gt["categories"]]
            ev.params.maxDets = [1, 10, self.max_detections]
            ev.evaluate()
            ev.accumulate()
        return np.asarray(ev.eval["precision"])

    def compute(self) -> dict:
        gt, dets, image_ids = self.coco_inputs()
        k = self.num_classes
        has_gt = np.zeros(k, dtype=bool)
        for a in gt["annotations"]:
            if not a["iscrowd"]:
                has_gt[a["category_id"] - 1] = True
        if dets and image_ids:
            precision = self._evaluate(gt, dets, image_ids)
            ap, ap50 = per_category_ap(precision), per_category_ap(precision, 0)
        else:  # nothing detected: AP 0 where there is ground truth (loadRes cannot take an empty list)
            ap = np.where(has_gt, 0.0, np.nan)
            ap50 = ap.copy()
        summary = ov_ap_summary(ap, ap50, self.base, self.novel)
        summary["AP_per_class"] = torch.tensor(summary["AP_per_class"])
        summary["AP50_per_class"] = torch.tensor(summary["AP50_per_class"])
        return summary

    def reset(self) -> None:
        super().reset()
        self._seen = 0
