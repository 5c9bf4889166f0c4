"""Open-vocabulary mIoU of a folder of predicted label PNGs against a folder of ground-truth label PNGs.

Predictions are class-index (or palette) PNGs in the preset's class order, ``0..K-1``; ground truth is read
as training reads it (the preset's ``reduce_zero_label`` and 255 = ignore). Pairs stream through a
``DataLoader`` (``workers`` processes decode PNGs and count) into ``distill.metrics.OpenVocabMeanIoU``, whose
dataset-level intersections and unions are the same as ``ovdistill test``'s; memory does not grow with the
number of images.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from distill.metrics import OpenVocabMeanIoU
from distill.metrics.segmentation import iou_counts

from ..data.seg_folder import read_label
from ..data.seg_presets import get_preset
from .det_results import world_split


@dataclass
class SegEvaluation:
    """Summary metrics (percent), per-class IoU (percent, NaN where a class is in neither map)."""

    metrics: dict
    classes: list[str]
    unseen: list[str]
    iou: np.ndarray
    images: int
    notes: list[str] = field(default_factory=list)


def seg_vocabulary(preset: str, gt_dir: Path) -> tuple[list[str], list[str], bool]:
    """(class names, unseen names, reduce_zero_label) of a preset, or of the world above ``gt_dir``."""
    if preset == "world":
        split = world_split(gt_dir)
        return ["background", *split["classes"]], list(split["novel"]), False
    p = get_preset(preset)
    return list(p.names), list(p.unseen), p.reduce_zero_label


class PairCounts(Dataset):
    """Per ground-truth file, ``iou_counts`` of its prediction (computed in the worker that decoded the PNGs);
    size and range checked, files named."""

    def __init__(self, pairs: list[tuple[Path, Path]], num_classes: int, reduce_zero_label: bool, ignore_index: int = 255):
        self.pairs, self.k, self.rzl, self.ignore = pairs, num_classes, reduce_zero_label, ignore_index

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        pred_path, gt_path = self.pairs[i]
        gt = read_label(gt_path, self.k, self.ignore, self.rzl)
        pred = read_label(pred_path, self.k, self.ignore, False)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred_path} is {tuple(pred.shape)} but its ground truth {gt_path} is {tuple(gt.shape)}")
        unlabelled = int(((pred == self.ignore) & (gt != self.ignore)).sum())
        if unlabelled:
            raise ValueError(
                f"prediction {pred_path} holds {self.ignore} (no class) at {unlabelled} labelled pixels: predict one of the "
                f"{self.k} classes at every pixel"
            )
        return iou_counts(pred, gt, self.k, self.ignore)


def _sum_counts(items: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(items).sum(0)


def listed_labels(gt_dir: Path, gt_suffix: str, list_file: Path) -> list[Path]:
    """The ground-truth labels of the ids in ``list_file`` (one per line, VOC's ``ImageSets/Segmentation/val.txt``):
    VOC's and Context's label folders hold every split, and only the listed one is evaluated."""
    if not list_file.is_file():
        raise FileNotFoundError(f"list file {list_file} does not exist")
    ids = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"list file {list_file} names no image")
    gts = [gt_dir / f"{i}{gt_suffix}" for i in ids]
    missing = [g for g in gts if not g.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of the {len(ids)} ids in {list_file} have no ground-truth label in {gt_dir} "
                                f"(e.g. {missing[0].name})")
    return gts


def pair_files(gt_dir: Path, pred_dir: Path, gt_suffix: str, pred_suffix: str, strict: bool, notes: list[str],
               list_file: Path | None = None) -> list[tuple[Path, Path]]:
    for d, what in ((gt_dir, "ground-truth"), (pred_dir, "prediction")):
        if not d.is_dir():
            raise FileNotFoundError(f"{what} folder {d} does not exist")
    gts = sorted(gt_dir.glob(f"*{gt_suffix}")) if list_file is None else listed_labels(gt_dir, gt_suffix, Path(list_file))
    if not gts:
        raise FileNotFoundError(f"no ground-truth labels *{gt_suffix} in {gt_dir}")
    pairs, missing = [], []
    for gt in gts:
        pred = pred_dir / (gt.name[: -len(gt_suffix)] + pred_suffix)
        (pairs if pred.is_file() else missing).append((pred, gt))
    if missing:
        msg = f"{len(missing)} of {len(gts)} ground-truth labels have no prediction in {pred_dir} (e.g. {missing[0][0].name})"
        if strict:
            raise FileNotFoundError(msg + "; --strict false evaluates the others with a warning")
        warnings.warn(msg + "; evaluated without them", stacklevel=2)
        notes.append(msg + "; evaluated without them")
    if not pairs:
        raise FileNotFoundError(f"no prediction in {pred_dir} matches a ground-truth label of {gt_dir}")
    return pairs


def evaluate_folders(gt_dir: str | Path, pred_dir: str | Path, preset: str, gt_suffix: str = ".png", pred_suffix: str = ".png",
                     workers: int = 0, strict: bool = True, list_file: str | Path | None = None) -> SegEvaluation:
    """``list_file``: evaluate only the ground truth of these ids (default: every label in ``gt_dir``)."""
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    names, unseen, rzl = seg_vocabulary(preset, gt_dir)
    notes: list[str] = []
    pairs = pair_files(gt_dir, pred_dir, gt_suffix, pred_suffix, strict, notes, list_file)
    metric = OpenVocabMeanIoU(len(names), [names.index(u) for u in unseen])
    # workers sum the counts of 32 pairs before handing them over: one message per 32 images, not per image
    loader = DataLoader(PairCounts(pairs, len(names), rzl), batch_size=32, num_workers=workers, collate_fn=_sum_counts)
    for counts in loader:
        metric.update_counts(counts)
    result = metric.compute()
    iou = result.pop("IoU_per_class").double().numpy()
    return SegEvaluation(result, names, unseen, iou, len(pairs), notes)
