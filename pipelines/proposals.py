"""Offline proposals for ViLD-image: top-N boxes of a base-trained RPN per image, and the teacher's
region embeddings of those boxes, computed once and stored in one file (written atomically).

File layout (``torch.save`` of plain tensors, loaded with ``weights_only=True``)::

    {"format": "ovdistill-proposals/1", "image_ids": LongTensor[M], "counts": LongTensor[M],
     "boxes": Tensor[sum N, 4] (xyxy pixels), "objectness": Tensor[sum N],
     "teacher_regions": Tensor[sum N, D] (optional), "teacher": str, "scales": list[float]}
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from distill.regions import teacher_region_embeddings

from .atomic import save_torch

FORMAT = "ovdistill-proposals/1"


@torch.no_grad()
def compute_proposals(detector, dataset, top_n: int = 100, teacher=None, scales=(1.0, 1.5), batch_size: int = 8, progress=None) -> dict:
    """Run ``detector.propose`` (class-agnostic RPN) over ``dataset`` and, with a teacher, embed the boxes."""
    detector.eval()
    device = next(detector.parameters()).device
    ids, counts, boxes, objectness, regions = [], [], [], [], []
    order = range(0, len(dataset), batch_size)
    for start in progress(order) if progress else order:
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        images = [img.to(device) for img, _ in items]
        props, scores = detector.propose(images)
        props = [p[:top_n].cpu() for p in props]
        scores = [s[:top_n].cpu() for s in scores]
        if teacher is not None:
            regions.append(teacher_region_embeddings(teacher, images, props, scales).cpu())
        ids += [t["image_id"] for _, t in items]
        counts += [len(p) for p in props]
        boxes += props
        objectness += scores
    out = {
        "format": FORMAT, "image_ids": torch.tensor(ids, dtype=torch.long), "counts": torch.tensor(counts, dtype=torch.long),
        "boxes": torch.cat(boxes) if boxes else torch.zeros(0, 4), "objectness": torch.cat(objectness) if objectness else torch.zeros(0),
        "scales": list(scales), "teacher": getattr(teacher, "name", ""),
    }
    if teacher is not None:
        out["teacher_regions"] = torch.cat(regions).half()
    return out


def save_proposals(proposals: dict, path: str | Path) -> Path:
    return save_torch(proposals, path)


def load_proposals(path: str | Path) -> dict[str, dict[int, Tensor]]:
    """``{"proposals": {image_id: [N,4]}, "objectness": {...}, "teacher_regions": {...} (if stored)}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"proposals file {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated / foreign files raise assorted unpickling errors
        raise ValueError(f"cannot read proposals file {path}: {err}") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not an ovdistill proposals file (format {FORMAT})")
    counts = data["counts"].tolist()
    if sum(counts) != len(data["boxes"]) or len(counts) != len(data["image_ids"]):
        raise ValueError(f"{path} is inconsistent: counts sum to {sum(counts)} but it holds {len(data['boxes'])} boxes")
    ids = data["image_ids"].tolist()
    out = {"proposals": dict(zip(ids, data["boxes"].split(counts))), "objectness": dict(zip(ids, data["objectness"].split(counts)))}
    if "teacher_regions" in data:
        out["teacher_regions"] = dict(zip(ids, data["teacher_regions"].float().split(counts)))
    return out
