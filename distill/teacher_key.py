"""What a cached teacher output depends on: the key a teacher cache is built under and checked against.

Two runs may share cached teacher maps only when the teacher (name, precision, a checksum of the image
tower's weights), the preprocessing (input size, output stride, dense mode) and the dense path's code
(``teachers.dense.DENSE_VERSION``) are the same; anything else is another cache. The checksum is computed once per teacher object.
"""
from __future__ import annotations

from torch import nn

from teachers.dense import DENSE_VERSION
from teachers.factory import weights_fingerprint


def image_tower_checksum(teacher: nn.Module) -> str:
    cached = getattr(teacher, "_image_tower_checksum", None)
    if cached is None:
        visual = getattr(getattr(teacher, "model", None), "visual", teacher)
        cached = weights_fingerprint(visual)
        teacher._image_tower_checksum = cached
    return cached


def dense_cache_key(teacher: nn.Module, mode: str, size, stride) -> dict:
    """Key of cached dense (MaskCLIP-path) maps: ``size`` None means the teacher's own input size."""
    if size == "input":
        raise ValueError("teacher_size: input runs the teacher at each view's own size, which a cache of whole training "
                         "images cannot hold: cache with a fixed teacher_size, or run the teacher live")
    size = tuple(size) if size is not None else tuple(teacher.image_size)
    return {
        "kind": "dense",
        "teacher": getattr(teacher, "name", type(teacher).__name__),
        "precision": str(getattr(teacher, "precision", "fp32")),
        "weights": image_tower_checksum(teacher),
        "mode": mode,
        "size": [int(size[0]), int(size[1])],
        "stride": None if stride is None else int(stride),
        "dense_version": DENSE_VERSION,  # the same weights and settings give other maps after a fix of the dense path
    }


def key_mismatch(cached: dict, wanted: dict, ignore=("flips",)) -> list[str]:
    """The fields where a cache's key differs from the one a run needs (``flips`` is a build option, not a
    run's concern)."""
    fields = sorted((set(cached) | set(wanted)) - set(ignore))
    return [f"{f}: cache {cached.get(f)!r} vs run {wanted.get(f)!r}" for f in fields if cached.get(f) != wanted.get(f)]
