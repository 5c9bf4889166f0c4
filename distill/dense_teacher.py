"""The check that a method built on the teacher's dense (MaskCLIP) path has a teacher that offers it."""
from __future__ import annotations

from torch import nn


def check_dense_teacher(teacher: nn.Module, mode: str, method: str) -> None:
    """Methods built on the teacher's dense path refuse, at construction, a tower that has none."""
    modes = teacher.dense_modes() if hasattr(teacher, "dense_modes") else ()
    if mode not in modes:
        tower = type(getattr(getattr(teacher, "model", None), "visual", None)).__name__
        raise NotImplementedError(
            f"{method} distils the teacher's dense (MaskCLIP) map with teacher_mode={mode!r}, but teacher "
            f"{getattr(teacher, 'name', '?')} (vision tower {tower}) offers {list(modes) or 'no dense mode'}: the value path "
            "is defined for open_clip ViT / ModifiedResNet towers and timm CNNs with an average-pool head, not for "
            "attention-pool (SigLIP MAP) heads or timm ViTs such as EVA02. Use LSeg with this teacher, or a CLIP ViT/RN teacher"
        )
