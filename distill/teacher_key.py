"""What a cached teacher output depends on: the key a teacher cache is built under and checked against.

Two runs may share cached teacher maps only when the teacher (name, precision, a checksum of the image
tower's weights) and the preprocessing (input size, output stride, dense mode) are the same; anything else
is another cache. The checksum is computed once per teacher object.
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn


def weights_checksum(module: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) over the names, dtypes, shapes and bytes of a module's state."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


def image_tower_checksum(teacher: nn.Module) -> str:
    cached = getattr(teacher, "_image_tower_checksum", None)
    if cached is None:
        visual = getattr(getattr(teacher, "model", None), "visual", teacher)
        cached = weights_checksum(visual)
        teacher._image_tower_checksum = cached
    return cached


def dense_cache_key(teacher: nn.Module, mode: str, size, stride) -> dict:
    """Key of cached dense (MaskCLIP-path) maps: ``size`` None means the teacher's own input size."""
    size = tuple(size) if size is not None else tuple(teacher.image_size)
    return {
        "kind": "dense",
        "teacher": getattr(teacher, "name", type(teacher).__name__),
        "precision": str(getattr(teacher, "precision", "fp32")),
        "weights": image_tower_checksum(teacher),
        "mode": mode,
        "size": [int(size[0]), int(size[1])],
        "stride": None if stride is None else int(stride),
    }


def key_mismatch(cached: dict, wanted: dict) -> list[str]:
    """The fields where a cache's key differs from the one a run needs (``flips`` is a build option)."""
    fields = sorted((set(cached) | set(wanted)) - {"flips"})
    return [f"{f}: cache {cached.get(f)!r} vs run {wanted.get(f)!r}" for f in fields if cached.get(f) != wanted.get(f)]
