"""Open-vocabulary detection splits: OV-COCO (OVR-CNN 48 base / 17 novel) and LVIS (rare = novel)."""
from __future__ import annotations

import json
from pathlib import Path

OV_COCO_NOVEL = (
    "airplane", "bus", "cat", "dog", "cow", "elephant", "umbrella", "tie", "snowboard", "skateboard", "cup", "knife",
    "cake", "couch", "keyboard", "sink", "scissors",
)
OV_COCO_BASE = (
    "person", "bicycle", "car", "motorcycle", "train", "truck", "boat", "bench", "bird", "horse", "sheep", "bear",
    "zebra", "giraffe", "backpack", "handbag", "suitcase", "frisbee", "skis", "kite", "surfboard", "bottle", "fork",
    "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "pizza", "donut", "chair", "bed",
    "toilet", "tv", "laptop", "mouse", "remote", "microwave", "oven", "toaster", "refrigerator", "book", "clock",
    "vase", "toothbrush",
)


def split_classes(split: str, ann_file: str | Path) -> tuple[list[str], list[str]]:
    """(class names in the JSON's category-id order, novel names) for a named split."""
    cats = sorted(json.loads(Path(ann_file).read_text())["categories"], key=lambda c: c["id"])
    names = [c["name"] for c in cats]
    if split == "ov_coco":
        wanted = set(OV_COCO_BASE) | set(OV_COCO_NOVEL)
        missing = sorted(wanted - set(names))
        if missing:
            raise ValueError(f"ov_coco split names classes absent from {ann_file}: {missing}")
        return [n for n in names if n in wanted], list(OV_COCO_NOVEL)
    if split == "lvis":
        no_freq = [c["name"] for c in cats if c.get("frequency") not in ("r", "c", "f")]
        if no_freq:
            raise ValueError(f"lvis split needs an r/c/f 'frequency' on every category of {ann_file}; missing on {no_freq[:5]}")
        return names, [c["name"] for c in cats if c["frequency"] == "r"]
    raise ValueError(f"unknown detection split {split!r}; known: 'ov_coco', 'lvis'")
