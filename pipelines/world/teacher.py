"""The embedded teacher: a small open_clip model pre-trained on the synthetic world, shipped with the package.

``pipelines/assets/world_teacher.pt`` (fp16 open_clip state dict) and ``world_teacher.json`` (its model
config, recipe and measured zero-shot accuracy) are produced by
``ovdistill pretrain-teacher --out DIR`` with the recipe recorded in the JSON.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Literal

from pipelines.world import WORLD_VERSION
from teachers import OpenCLIPTeacher

TEACHER_PT = "teacher.pt"
TEACHER_JSON = "teacher.json"
ASSETS = Path(__file__).resolve().parents[1] / "assets"
SHIPPED_PT = ASSETS / "world_teacher.pt"
SHIPPED_JSON = ASSETS / "world_teacher.json"


def load_teacher_dir(root: str | Path | None, device="cpu", precision: Literal["fp32", "fp16", "bf16"] = "fp32") -> tuple[EmbeddedTeacher, dict]:
    """Load a teacher exported by ``ovdistill pretrain-teacher --out ROOT`` (``None``: the shipped one)."""
    teacher = EmbeddedTeacher(None if root is None else str(root), precision=precision, device=device)
    if teacher.meta.get("world_version") != WORLD_VERSION:
        warnings.warn(
            f"teacher {teacher.name} was trained on world version {teacher.meta.get('world_version')}, this generator "
            f"is version {WORLD_VERSION}; retrain it with `ovdistill pretrain-teacher`",
            stacklevel=2,
        )
    return teacher, teacher.meta


def load_shipped_teacher(device="cpu", precision: Literal["fp32", "fp16", "bf16"] = "fp32") -> tuple[EmbeddedTeacher, dict]:
    """Load the teacher shipped inside the package."""
    return load_teacher_dir(None, device, precision)


def shipped_teacher_available() -> bool:
    return SHIPPED_PT.is_file() and SHIPPED_JSON.is_file()


class EmbeddedTeacher(OpenCLIPTeacher):
    """The embedded teacher as a config-friendly class: ``teacher: {class_path: pipelines.world.teacher.EmbeddedTeacher}``.

    Args:
        path: a directory exported by ``ovdistill pretrain-teacher``; ``None`` = the one shipped in the package.
    """

    def __init__(self, path: str | None = None, precision: Literal["fp32", "fp16", "bf16"] = "fp32", device="cpu"):
        pt, meta_path = (SHIPPED_PT, SHIPPED_JSON) if path is None else (Path(path) / TEACHER_PT, Path(path) / TEACHER_JSON)
        if not meta_path.is_file() or not pt.is_file():
            raise FileNotFoundError(f"no complete embedded teacher at {pt} / {meta_path}; run `ovdistill pretrain-teacher`")
        meta = json.loads(meta_path.read_text())
        super().__init__(meta["model_name"], str(pt), model_cfg=meta["model_cfg"], precision=precision, device=device)
        self.meta, self.path = meta, path

    def at_precision(self, precision: Literal["fp32", "fp16", "bf16"]) -> EmbeddedTeacher:
        """The same teacher loaded again at ``precision`` (open_clip's own conversion); itself if already there."""
        if precision == self.precision:
            return self
        return EmbeddedTeacher(self.path, precision=precision, device=self.device)


def save_trunk_weights(teacher: OpenCLIPTeacher, path: str | Path, layout: str = "smp") -> Path:
    """Save the teacher's timm image trunk as initial weights for a student backbone (a local weights file).

    The synthetic world has no ImageNet: the embedded teacher's trunk is the only pre-trained vision
    backbone, playing the role ImageNet / CLIP initialisation plays on real data. ``layout="smp"`` keys
    the tensors for an smp ``tu-<name>`` encoder (``model.`` prefix); ``"timm"`` keeps timm's own names
    (for ``students.RegionEmbeddingDetector(backbone="timm:<name>")``).
    """
    from pipelines.data.atomic import save_torch

    trunk = getattr(teacher.model.visual, "trunk", None)
    if trunk is None:
        raise ValueError(f"teacher {teacher.name} has no timm trunk to export")
    if layout not in ("smp", "timm"):
        raise ValueError(f"layout must be 'smp' or 'timm', got {layout!r}")
    prefix = "model." if layout == "smp" else ""
    state = {prefix + k: v.float().clone() for k, v in trunk.state_dict().items() if not k.startswith(("fc.", "head."))}
    return save_torch(state, path)
