"""Open-vocabulary AP of a COCO results file (what every detector writes) against COCO / LVIS ground truth.

The semantics are ``distill.metrics``' (per-category AP from the evaluator's precision array, subset means
over the categories with ground truth); the evaluator is pycocotools / faster-coco-eval, or the ``lvis``
package for LVIS (federated rules, APr / APc / APf).
"""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distill.metrics.detection import coco_api, ov_ap_summary, per_category_ap
from distill.metrics.lvis import lvis_percent, run_lvis_eval

from ..data.coco_det import load_coco, read_json
from ..data.det_splits import split_classes

RECALL = np.linspace(0.0, 1.0, 101)  # COCOeval's recall thresholds


@dataclass
class DetEvaluation:
    """Summary metrics (percent), and per class: name, novel flag, AP, AP50, precision at IoU 0.5 over ``RECALL``."""

    metrics: dict
    classes: list[str]
    novel: list[str]
    ap: np.ndarray
    ap50: np.ndarray
    pr50: np.ndarray
    notes: list[str] = field(default_factory=list)


def world_split(path: Path) -> dict:
    """The ``split.json`` of the world holding ``path`` (in it or any folder above it)."""
    path = path.resolve()
    found = next((d / "split.json" for d in [path, *path.parents] if (d / "split.json").is_file()), None)
    if found is None:
        raise FileNotFoundError(f"no split.json in {path} or any folder above it: give a file or folder inside a world")
    return json.loads(found.read_text())


def novel_names(split: str, gt_path: Path, gt: dict) -> tuple[list[str], list[str]]:
    """(evaluated class names in category-id order, novel names) for ``ov_coco`` / ``lvis`` / ``world`` / a FILE."""
    if split in ("ov_coco", "lvis"):
        return split_classes(split, gt_path)
    names = [c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    if split == "world":
        novel = list(world_split(gt_path)["novel"])
    else:
        path = Path(split)
        if not path.is_file():
            raise ValueError(f"--split {split!r} is neither ov_coco, lvis, world nor a file of novel class names")
        text = path.read_text()
        novel = json.loads(text) if text.lstrip().startswith(("[", "{")) else [t.strip() for t in text.splitlines() if t.strip()]
        novel = novel["novel"] if isinstance(novel, dict) else novel
    unknown = [n for n in novel if n not in names]
    if unknown:
        raise ValueError(f"novel classes {unknown} (from --split {split}) are not categories of {gt_path}")
    return names, novel


def _map_categories(dets: list[dict], gt_cats: list[dict], dt_path: Path, dt_categories: Path | None) -> list[dict]:
    """Detections with ground-truth category ids; mapped by name where the results use another id space
    (``dt_categories``: their id -> name list) or carry ``category_name``."""
    by_name = {c["name"]: c["id"] for c in gt_cats}
    if dt_categories is not None:
        data = read_json(dt_categories, "results category file")
        theirs = {c["id"]: c["name"] for c in (data["categories"] if isinstance(data, dict) else data)}
        used = {d["category_id"] for d in dets}
        missing_ids = sorted(used - set(theirs))
        if missing_ids:
            raise ValueError(f"{dt_path}: category ids {missing_ids[:10]} are not in {dt_categories}")
        name_of = {d_id: theirs[d_id] for d_id in used}
        names = [name_of[d["category_id"]] for d in dets]
    elif dets and all("category_name" in d for d in dets):
        names = [d["category_name"] for d in dets]
    else:
        unknown = sorted({d["category_id"] for d in dets} - set(by_name.values()))
        if unknown:
            raise ValueError(
                f"{dt_path}: category ids {unknown[:10]} are not in the ground truth; if the results number classes their "
                "own way, give --dt-categories FILE (their id -> name list) to map them by name"
            )
        return dets
    unmapped = sorted(set(names) - set(by_name))
    if unmapped:
        raise ValueError(f"{dt_path}: categories {unmapped[:20]} have no ground-truth category of that name")
    return [{**d, "category_id": by_name[n]} for d, n in zip(dets, names, strict=True)]


def load_results(dt_path: str | Path, gt: dict, iou_type: str, strict: bool, dt_categories: str | Path | None = None,
                 notes: list[str] | None = None) -> list[dict]:
    """The detections of a COCO results file, checked and mapped onto the ground truth's ids."""
    dt_path = Path(dt_path)
    dets = read_json(dt_path, "results file")
    if isinstance(dets, dict) and "annotations" in dets:
        dets = dets["annotations"]
    if not isinstance(dets, list):
        raise ValueError(f"{dt_path}: a COCO results file is a JSON list of detections, got a {type(dets).__name__}")
    need = ("image_id", "score", "bbox" if iou_type == "bbox" else "segmentation")
    for k, d in enumerate(dets):
        missing = [f for f in need if f not in d] + ([] if "category_id" in d or "category_name" in d else ["category_id"])
        if missing:
            raise ValueError(f"{dt_path}: detection {k} has no {missing} (iou type {iou_type})")
        if iou_type == "bbox" and len(d["bbox"]) != 4:
            raise ValueError(f"{dt_path}: detection {k} has bbox {d['bbox']}; COCO boxes are [x, y, width, height]")
    image_ids = {im["id"] for im in gt["images"]}
    foreign = sorted({d["image_id"] for d in dets} - image_ids)
    if foreign:
        msg = f"{dt_path}: {len(foreign)} image ids are not in the ground truth (e.g. {foreign[:5]})"
        if strict:
            raise ValueError(msg + "; --strict false drops their detections with a warning")
        warnings.warn(msg + "; their detections are dropped", stacklevel=2)
        (notes if notes is not None else []).append(msg + "; dropped")
        dets = [d for d in dets if d["image_id"] in image_ids]
    return _map_categories(dets, gt["categories"], dt_path, Path(dt_categories) if dt_categories else None)


def evaluate_detections(gt_path: str | Path, dt_path: str | Path, split: str, iou_type: str = "bbox", strict: bool = True,
                        dt_categories: str | Path | None = None, backend: str = "pycocotools", max_dets: int | None = None) -> DetEvaluation:
    """Evaluate a results file: AP / AP50 over all, base and novel classes (LVIS: APr / APc / APf), per class."""
    gt_path = Path(gt_path)
    gt = load_coco(gt_path).dataset  # checked as training reads it (lists present, no duplicate image ids)
    names, novel = novel_names(split, gt_path, gt)
    notes: list[str] = []
    dets = load_results(dt_path, gt, iou_type, strict, dt_categories, notes)
    if not dets:
        raise ValueError(f"{dt_path} holds no detections of the ground truth's images")
    id_of = {c["name"]: c["id"] for c in gt["categories"]}
    cat_ids = [id_of[n] for n in names]
    if split == "lvis":
        precision, lvis_metrics = _lvis_precision(gt_path, dets, iou_type, cat_ids, max_dets or 300)
    else:
        precision, lvis_metrics = _coco_precision(gt, dets, iou_type, cat_ids, backend, max_dets or 100), {}
    novel_idx = [names.index(n) for n in novel]
    base_idx = [k for k in range(len(names)) if k not in novel_idx]
    summary = ov_ap_summary(per_category_ap(precision), per_category_ap(precision, 0), base_idx, novel_idx)
    ap, ap50 = summary.pop("AP_per_class"), summary.pop("AP50_per_class")
    metrics = {**summary, **lvis_metrics}
    return DetEvaluation(metrics, names, novel, ap, ap50, precision[0, :, :, 0, -1].T.copy(), notes)


def _coco_precision(gt: dict, dets: list[dict], iou_type: str, cat_ids: list[int], backend: str, max_dets: int) -> np.ndarray:
    COCO, COCOeval = coco_api(backend)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()  # the dict already read (and checked) here, not a second parse of the file
        coco_gt.dataset = gt
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(dets), iou_type)
        ev.params.catIds = cat_ids
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
    return np.asarray(ev.eval["precision"])


def _lvis_precision(gt_path: Path, dets: list[dict], iou_type: str, cat_ids: list[int], max_dets: int) -> tuple[np.ndarray, dict]:
    ev = run_lvis_eval(gt_path, dets, iou_type, max_dets)
    order = [ev.params.cat_ids.index(c) for c in cat_ids]
    precision = np.asarray(ev.eval["precision"])[:, :, order, :][..., None]  # [T, R, K, A] -> COCO's [T, R, K, A, M]
    return precision, {k: lvis_percent(ev, k) for k in ("APr", "APc", "APf")}
