"""Reading a teacher cache (built by ``ovdistill cache``) and fitting cached dense maps to augmented images.

On disk a cache is a directory: ``index.json`` (the key — teacher, weights checksum, preprocessing — the
image stems in dataset order, and per shard its file, rows, byte size and SHA-256) and shards
``shard-NNNNN.safetensors`` holding fp16 ``dense`` ``[n, D, h, w]`` maps of the **un-augmented** images
(and ``dense_flip``, the maps of their mirror images, when built with flips). Shards are opened lazily,
memory-mapped, one handle per process; a row is copied out when it is read, so memory does not grow
with the cache.

Augmentation: a flipped sample reads the map of the flipped image (exact); a scale + crop reads the crop
window out of the whole-image map with RoIAlign on the same grid the live teacher would produce. Cells
outside the image (padding) are zero vectors, which the losses ignore.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.ops import roi_align

from .coco_det import read_json
from .shards import OpenShards

INDEX = "index.json"


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}.safetensors"


def read_index(root: str | os.PathLike) -> dict:
    path = Path(root) / INDEX
    if not path.is_file():
        raise FileNotFoundError(
            f"no teacher cache index at {path}: build it with `ovdistill cache -c CONFIG.yaml --out {root}` "
            "(a build that was interrupted finishes when run again)"
        )
    return read_json(path, "teacher cache index")


class DenseCache:
    """Row ``i`` of the cache = dataset item ``i``; ``get(i, flip)`` -> float32 ``[D, h, w]``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.index = read_index(self.root)
        self.key: dict = self.index["key"]
        self.stems: list[str] = self.index["stems"]
        self.flips: bool = bool(self.key.get("flips"))
        self.shards = OpenShards(self.root, self.index["shards"], "teacher cache",
                                 "run `ovdistill cache` again with the same config to recompute it")
        self._where = [(shard["file"], r) for shard in self.index["shards"] for r in range(shard["rows"])]

    def __len__(self) -> int:
        return len(self._where)

    def check_stems(self, stems: list[str], what: str) -> None:
        """The cache must describe exactly these images, in this order."""
        if list(stems) != self.stems:
            # one list may be a prefix of the other: the first difference is then the shorter one's end
            diff = next((i for i, (a, b) in enumerate(zip(stems, self.stems, strict=False)) if a != b), min(len(stems), len(self.stems)))
            raise ValueError(
                f"teacher cache {self.root} was built for {len(self.stems)} images but {what} has {len(stems)}; first difference "
                f"at position {diff} ({self.stems[diff] if diff < len(self.stems) else None!r} vs "
                f"{stems[diff] if diff < len(stems) else None!r}); rebuild it with `ovdistill cache ... --rebuild`"
            )

    def get(self, i: int, flip: bool = False) -> Tensor:
        if flip and not self.flips:
            raise ValueError(f"teacher cache {self.root} was built without flips; rebuild with flips to train with h-flips")
        file, row = self._where[i]
        return self.shards.slice(file, "dense_flip" if flip else "dense")[row].float()


def crop_dense(dense: Tensor, box: tuple[float, float, float, float], image_hw: tuple[int, int]) -> Tensor:
    """The part of a whole-image map ``[D, h, w]`` under ``box`` (x0, y0, x1, y1 in image pixels, may reach
    past the image), resampled to the same ``h x w`` grid; cells whose centre lies outside the image are 0."""
    h, w = dense.shape[-2:]
    height, width = image_hw
    if tuple(box) == (0, 0, width, height):
        return dense
    x0, y0, x1, y1 = box
    rois = torch.tensor([[0, x0 * w / width, y0 * h / height, x1 * w / width, y1 * h / height]], dtype=dense.dtype)
    # adaptive sampling: one sample per bin at the live grid's scale, area averages when the window is larger
    out = roi_align(dense[None], rois, (h, w), spatial_scale=1.0, sampling_ratio=-1, aligned=True)[0]
    ys = y0 + (torch.arange(h, dtype=torch.float32) + 0.5) * (y1 - y0) / h
    xs = x0 + (torch.arange(w, dtype=torch.float32) + 0.5) * (x1 - x0) / w
    inside = ((ys >= 0) & (ys < height))[:, None] & ((xs >= 0) & (xs < width))[None, :]
    return out * inside.to(out.dtype)


class WithTeacherDense(Dataset):
    """Adds the cached map(s) of item ``i`` to it: ``teacher_dense`` (and ``teacher_dense_flip``)."""

    def __init__(self, base: Dataset, cache: DenseCache):
        self.base, self.cache = base, cache
        if len(cache) != len(base):
            raise ValueError(f"teacher cache {cache.root} holds {len(cache)} images, the dataset {len(base)}; rebuild it")

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base[i])
        item["teacher_dense"] = self.cache.get(i)
        if self.cache.flips:
            item["teacher_dense_flip"] = self.cache.get(i, flip=True)
        return item


def fit_dense(item: dict, box: tuple[float, float, float, float], image_hw: tuple[int, int], flip: bool) -> None:
    """Replace the item's cached maps by the one that matches its augmented image (crop ``box`` in the original
    image's pixels, then an optional h-flip)."""
    plain = item.pop("teacher_dense")
    mirrored = item.pop("teacher_dense_flip", None)
    if flip:
        if mirrored is None:
            raise ValueError("this teacher cache was built without flips; rebuild it with flips or turn flips off")
        x0, y0, x1, y1 = box
        width = image_hw[1]
        item["teacher_dense"] = crop_dense(mirrored, (width - x1, y0, width - x0, y1), image_hw)
    else:
        item["teacher_dense"] = crop_dense(plain, box, image_hw)
