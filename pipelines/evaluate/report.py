"""What ``ovdistill evaluate`` writes: ``metrics.json`` (NaN as null), ``metrics.md`` (summary + per-class
table) and the plots, all atomically; and the summary it prints."""
from __future__ import annotations

import math
from pathlib import Path

from ..data.atomic import save_json, save_text
from .det_results import RECALL, DetEvaluation
from .plots import per_class_bars, pr_curves
from .seg_folders import SegEvaluation


def _num(v):
    v = float(v)
    return None if math.isnan(v) else v


def _cell(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def _markdown(title: str, metrics: dict, header: list[str], rows: list[list], notes: list[str]) -> str:
    lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in metrics.items()]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c if isinstance(c, str) else _cell(c) for c in r) + " |" for r in rows]
    lines += ["", "– : the class has no ground truth (and no prediction) in the evaluated images; left out of every mean."]
    lines += [f"- note: {n}" for n in notes]
    return "\n".join(lines) + "\n"


def write_seg_report(ev: SegEvaluation, out: Path, inputs: dict) -> list[Path]:
    per_class = {n: _num(v) for n, v in zip(ev.classes, ev.iou, strict=True)}
    files = [
        save_json({"task": "segmentation", "inputs": inputs, "images": ev.images, "metrics": {k: _num(v) for k, v in ev.metrics.items()},
                   "IoU_per_class": per_class, "unseen": ev.unseen, "notes": ev.notes}, out / "metrics.json"),
        save_text(_markdown(f"Segmentation: {ev.images} images", ev.metrics, ["class", "held out", "IoU"],
                            [[n, "yes" if n in ev.unseen else "", v] for n, v in zip(ev.classes, ev.iou, strict=True)], ev.notes),
                  out / "metrics.md"),
        per_class_bars(ev.classes, ev.iou, ev.unseen, "IoU (%)", f"per-class IoU ({ev.images} images)", out / "iou_per_class.png"),
    ]
    return files


def write_det_report(ev: DetEvaluation, out: Path, inputs: dict) -> list[Path]:
    per_class = {n: {"AP": _num(a * 100), "AP50": _num(b * 100), "novel": n in ev.novel} for n, a, b in zip(ev.classes, ev.ap, ev.ap50, strict=True)}
    rows = [[n, "yes" if n in ev.novel else "", a * 100, b * 100] for n, a, b in zip(ev.classes, ev.ap, ev.ap50, strict=True)]
    pr = dict(zip(ev.classes, ev.pr50, strict=True))
    return [
        save_json({"task": "detection", "inputs": inputs, "metrics": {k: _num(v) for k, v in ev.metrics.items()},
                   "per_class": per_class, "novel": ev.novel, "notes": ev.notes}, out / "metrics.json"),
        save_text(_markdown("Detection", ev.metrics, ["class", "novel", "AP", "AP50"], rows, ev.notes), out / "metrics.md"),
        per_class_bars(ev.classes, ev.ap * 100, ev.novel, "AP (%)", "per-class AP (IoU 0.50:0.95)", out / "ap_per_class.png"),
        pr_curves(ev.novel, RECALL, pr, "novel classes: precision-recall at IoU 0.5", out / "pr_novel.png"),
    ]


def summary_line(metrics: dict) -> str:
    return "  ".join(f"{k} {_cell(v)}" for k, v in metrics.items())
