"""OV-LVIS box AP with the ``lvis`` package's evaluator: AP, AP50, APr (novel = rare), APc, APf (percent).

Ground truth (and each category's ``frequency``) comes from the LVIS-format JSON itself, so the federated
rules (``neg_category_ids``, ``not_exhaustive_category_ids``) apply as in the official evaluation. Predicted
``labels`` are indices into the JSON's categories sorted by id (``class_names`` order); images must carry
their LVIS ``image_id``. Only the images that were updated are evaluated (a validation subset or shard).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
from pathlib import Path

import numpy as np

from .detection import _DetectionStore


def lvis_categories(path: str | Path) -> list[dict]:
    """The categories of an LVIS-format JSON sorted by id; each must have a ``frequency`` in r / c / f."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LVIS annotation file {path} does not exist")
    cats = sorted(json.loads(path.read_text())["categories"], key=lambda c: c["id"])
    bad = [c["name"] for c in cats if c.get("frequency") not in ("r", "c", "f")]
    if bad:
        raise ValueError(f"{path}: categories without an r/c/f 'frequency': {bad[:5]}")
    return cats


@contextlib.contextmanager
def _numpy_float_alias():
    """lvis 0.5.3 (the current release) still calls ``np.float``, removed in NumPy 1.24; alias it while it runs."""
    added = "float" not in np.__dict__
    if added:
        np.float = float
    try:
        yield
    finally:
        if added:
            del np.float


def run_lvis_eval(lvis_json: str | Path, dets: list[dict], iou_type: str = "bbox", max_dets: int = 300,
                  img_ids: list[int] | None = None):
    """``LVISEval`` run on ``dets`` (LVIS category ids) against ``lvis_json``, optionally on ``img_ids`` only."""
    from lvis import LVIS, LVISEval, LVISResults

    logging.getLogger("lvis").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), _numpy_float_alias():
        gt = LVIS(str(lvis_json))
        if img_ids is not None:
            missing = sorted(set(img_ids) - set(gt.get_img_ids()))
            if missing:
                raise ValueError(f"image ids {missing[:5]} are not in {lvis_json}")
        ev = LVISEval(gt, LVISResults(gt, dets, max_dets=max_dets), iou_type)
        if img_ids is not None:
            ev.params.img_ids = img_ids
        ev.run()
    return ev


def lvis_percent(ev, key: str) -> float:
    """A summary value in percent; the evaluator's -1 (no ground truth in that group) is NaN."""
    return float(ev.results[key]) * 100 if ev.results[key] > -1 else math.nan


class LVISDetectionAP(_DetectionStore):
    def __init__(self, lvis_json: str, max_detections: int = 300, **kwargs):
        self.lvis_json = str(lvis_json)
        cats = lvis_categories(lvis_json)
        super().__init__(len(cats), **kwargs)
        self.class_names = [c["name"] for c in cats]
        self.category_ids = [c["id"] for c in cats]
        self.novel = [i for i, c in enumerate(cats) if c["frequency"] == "r"]
        self.max_detections = max_detections

    def compute(self) -> dict:
        _, dets, image_ids = self.coco_inputs()
        keys = ("AP", "AP50", "APr", "APc", "APf")
        if not dets:
            return {k: 0.0 for k in keys}
        for d in dets:  # coco_inputs numbers categories index + 1; map back to the JSON's ids
            d["category_id"] = self.category_ids[d["category_id"] - 1]
        ev = run_lvis_eval(self.lvis_json, dets, "bbox", self.max_detections, image_ids)
        return {k: lvis_percent(ev, k) for k in keys}

