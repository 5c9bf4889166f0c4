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
        from lvis import LVIS, LVISEval, LVISResults

        _, dets, image_ids = self.coco_inputs()
        keys = ("AP", "AP50", "APr", "APc", "APf")
        if not dets:
            return {k: 0.0 for k in keys}
        for d in dets:  # coco_inputs numbers categories index + 1; map back to the JSON's ids
            d["category_id"] = self.category_ids[d["category_id"] - 1]
        logging.getLogger("lvis").setLevel(logging.ERROR)
        with contextlib.redirect_stdout(io.StringIO()), _numpy_float_alias():
            gt = LVIS(self.lvis_json)
            missing = sorted(set(image_ids) - set(gt.get_img_ids()))
            if missing:
                raise ValueError(f"image ids {missing[:5]} are not in {self.lvis_json}")
            ev = LVISEval(gt, LVISResults(gt, dets, max_dets=self.max_detections), "bbox")
            ev.params.img_ids = image_ids
            ev.run()
        # the evaluator reports -1 for a frequency group without ground truth among the evaluated images
        return {k: (float(ev.results[k]) * 100 if ev.results[k] > -1 else math.nan) for k in keys}

