"""The proposals store as shards: a directory that holds what a proposals file holds, for datasets whose
teacher region embeddings do not fit in memory (COCO: 118k images x 300 proposals x 512-d).

``index.json`` keeps the file's scalar fields and per shard its image ids, box counts, bytes and SHA-256;
``shard-NNNNN.safetensors`` hold ``image_ids``, ``counts``, ``boxes``, ``objectness`` and (optionally)
``teacher_regions`` (fp16) of ``shard_size`` images each (``pipelines.data.shards``: atomic, checksummed).
Loading reads the boxes at once and leaves the region embeddings on disk: ``LazyRows`` copies out one image's
rows (``OpenShards``: memory-mapped) when a training sample asks for them.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import Tensor

from .atomic import save_json
from .shards import OpenShards, check_shard, write_shard

FORMAT = "ovdistill-proposals-shards/1"
SCALARS = ("source", "teacher", "scales", "region_teacher")


class LazyRows(Mapping):
    """``{image_id: Tensor[N, D]}`` read on demand from the store's shards."""

    def __init__(self, shards: OpenShards, where: dict[int, tuple[str, int, int]]):
        self.shards, self.where = shards, where

    def __getitem__(self, image_id: int) -> Tensor:
        file, start, count = self.where[image_id]
        return self.shards.slice(file, "teacher_regions")[start : start + count].float()

    def __iter__(self) -> Iterator[int]:
        return iter(self.where)

    def __len__(self) -> int:
        return len(self.where)


def save_sharded(props: dict, out: str | Path, shard_size: int = 1000) -> Path:
    """Write a packed proposals dict (``pack_proposals``) as a shard directory; returns its index path."""
    out = Path(out)
    ids, counts = props["image_ids"], props["counts"]
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    digest = f"{props.get('source', '')}-{len(ids)}"
    shards = []
    for n, lo in enumerate(range(0, len(ids), shard_size)):
        hi = min(len(ids), lo + shard_size)
        a, b = int(offsets[lo]), int(offsets[hi])
        tensors = {"image_ids": ids[lo:hi], "counts": counts[lo:hi], "boxes": props["boxes"][a:b], "objectness": props["objectness"][a:b]}
        if "teacher_regions" in props:
            tensors["teacher_regions"] = props["teacher_regions"][a:b].half()
        record = write_shard(out / f"shard-{n:05d}.safetensors", tensors, digest)
        shards.append({**record, "images": hi - lo})
    index = {"format": FORMAT, "digest": digest, "teacher_dim": int(props["teacher_regions"].shape[1]) if "teacher_regions" in props else None,
             **{k: props.get(k) for k in SCALARS}, "shards": shards}
    return save_json(index, out / "index.json")


def load_sharded(root: Path, index: dict) -> dict:
    """The same mapping ``load_proposals`` returns for a single file, with lazily read ``teacher_regions``."""
    from safetensors import safe_open

    if index.get("format") != FORMAT:
        raise ValueError(f"{root / 'index.json'} is not an ovdistill proposals store (format {FORMAT})")
    shards = OpenShards(root, index["shards"], "proposals store", "write the store again with `ovdistill proposals`")
    proposals, objectness, where = {}, {}, {}
    for shard in index["shards"]:
        with safe_open(str(root / shard["file"]), framework="pt") as fh:
            image_ids, counts = fh.get_tensor("image_ids").tolist(), fh.get_tensor("counts").tolist()
            boxes, scores = fh.get_tensor("boxes").split(counts), fh.get_tensor("objectness").split(counts)
        start = 0
        for image_id, count, b, o in zip(image_ids, counts, boxes, scores, strict=True):
            proposals[image_id], objectness[image_id] = b, o
            where[image_id] = (shard["file"], start, count)
            start += count
    out = {"proposals": proposals, "objectness": objectness}
    if index.get("teacher_dim"):
        out["teacher_regions"] = LazyRows(shards, where)
    out["meta"] = {"path": str(root), **{k: index.get(k) for k in SCALARS}, "teacher_dim": index.get("teacher_dim")}
    out["meta"]["region_teacher"] = out["meta"].get("region_teacher") or "crop"
    return out


def verify_sharded(root: Path, index: dict) -> list[str]:
    """Every shard's full checksum; returns the problems found (empty when the store is intact)."""
    bad = []
    for shard in index["shards"]:
        record, why = check_shard(root / shard["file"], index["digest"], shard["images"])
        if record is None or record["sha256"] != shard["sha256"]:
            bad.append(f"{shard['file']}: {why or 'checksum differs from the index'}")
    return bad
