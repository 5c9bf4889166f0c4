"""The proposals file of ViLD-image: top-N boxes of a base-trained RPN per image and the teacher's region
embeddings of those boxes (computed by ``pipelines.offline.proposals``), stored in one file written atomically
(a ``.pt`` path) or as a directory of safetensors shards read lazily (any other path; ``proposals_shards``).

File layout (``torch.save`` of plain tensors, loaded with ``weights_only=True``)::

    {"format": "ovdistill-proposals/1", "image_ids": LongTensor[M], "counts": LongTensor[M],
     "boxes": Tensor[sum N, 4] (xyxy pixels), "objectness": Tensor[sum N],
     "teacher_regions": Tensor[sum N, D] (optional), "teacher": str, "scales": list[float]}
"""
from __future__ import annotations

from pathlib import Path

import torch

from pipelines.data.atomic import save_torch

from .coco_det import read_json
from .proposals_shards import load_sharded, save_sharded
from .shards import file_sha256

FORMAT = "ovdistill-proposals/1"


def file_fingerprint(path: str | Path) -> str:
    """sha256 (16 hex) of a file: what a proposals file was computed from."""
    return file_sha256(Path(path))[:16]


def pack_proposals(items: list[dict], teacher=None, scales=(1.0, 1.5), source: str = "", region_teacher: str = "crop") -> dict:
    """The file's dict from per-image ``{"image_id", "boxes", "objectness"[, "regions"]}`` items; ``source`` is the
    fingerprint of the annotation file whose images they were computed on."""
    out = {
        "source": source,
        "format": FORMAT,
        "image_ids": torch.tensor([int(i["image_id"]) for i in items], dtype=torch.long),
        "counts": torch.tensor([len(i["boxes"]) for i in items], dtype=torch.long),
        "boxes": torch.cat([i["boxes"].float() for i in items]) if items else torch.zeros(0, 4),
        "objectness": torch.cat([i["objectness"].float() for i in items]) if items else torch.zeros(0),
        "scales": list(scales), "teacher": getattr(teacher, "name", "") if teacher is not None else "",
        "region_teacher": region_teacher,
    }
    if teacher is not None:
        out["teacher_regions"] = torch.cat([i["regions"].float() for i in items]).half()
    return out


def save_proposals(proposals: dict, path: str | Path) -> Path:
    """A ``.pt`` path: one file; any other path: a directory of safetensors shards (``proposals_shards``)."""
    if Path(path).suffix == ".pt":
        return save_torch(proposals, path)
    return save_sharded(proposals, path)


def load_proposals(path: str | Path) -> dict[str, dict]:
    """``{"proposals": {image_id: [N,4]}, "objectness": {...}, "teacher_regions": {...} (if stored), "meta": {...}}``;
    ``meta`` names the teacher that embedded the regions (checked by the methods that use them)."""
    path = Path(path)
    if path.is_dir():
        index = path / "index.json"
        if not index.is_file():
            raise FileNotFoundError(f"proposals store {path} has no index.json (an interrupted write): run `ovdistill proposals` again")
        return load_sharded(path, read_json(index, "proposals store index"))
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
    out = {"proposals": dict(zip(ids, data["boxes"].split(counts), strict=True)),
           "objectness": dict(zip(ids, data["objectness"].split(counts), strict=True))}
    if "teacher_regions" in data:
        regions = data["teacher_regions"]
        if regions.ndim != 2 or len(regions) != len(data["boxes"]):
            raise ValueError(f"{path}: teacher_regions has shape {tuple(regions.shape)} for {len(data['boxes'])} boxes")
        out["teacher_regions"] = dict(zip(ids, regions.float().split(counts), strict=True))
    out["meta"] = {
        "path": str(path), "teacher": data.get("teacher", ""), "scales": list(data.get("scales", [])), "source": data.get("source", ""),
        "region_teacher": data.get("region_teacher", "crop"),
        "teacher_dim": int(data["teacher_regions"].shape[1]) if "teacher_regions" in data else None,
    }
    return out
