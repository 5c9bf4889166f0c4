"""The embedded teacher: a small open_clip model pre-trained on the synthetic world, shipped with the package.

``pipelines/assets/world_teacher.pt`` (fp16 open_clip state dict) and ``world_teacher.json`` (its model
config, recipe and measured zero-shot accuracy) are produced by
``ovdistill pretrain-teacher --out DIR`` with the recipe recorded in the JSON.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from teachers import OpenCLIPTeacher

from pipelines.world import WORLD_VERSION

TEACHER_PT = "teacher.pt"
TEACHER_JSON = "teacher.json"
ASSETS = Path(__file__).parent / "assets"
SHIPPED_PT = ASSETS / "world_teacher.pt"
SHIPPED_JSON = ASSETS / "world_teacher.json"


def _load(pt: Path, meta_path: Path, device="cpu") -> tuple[OpenCLIPTeacher, dict]:
    if not meta_path.is_file() or not pt.is_file():
        raise FileNotFoundError(f"no complete embedded teacher at {pt} / {meta_path}; run `ovdistill pretrain-teacher`")
    meta = json.loads(meta_path.read_text())
    if meta.get("world_version") != WORLD_VERSION:
        warnings.warn(
            f"teacher {pt} was trained on world version {meta.get('world_version')}, this generator is version "
            f"{WORLD_VERSION}; retrain it with `ovdistill pretrain-teacher`",
            stacklevel=2,
        )
    teacher = OpenCLIPTeacher(meta["model_name"], str(pt), model_cfg=meta["model_cfg"], device=device)
    return teacher, meta


def load_teacher_dir(root: str | Path, device="cpu") -> tuple[OpenCLIPTeacher, dict]:
    """Load a teacher exported by ``ovdistill pretrain-teacher --out ROOT``."""
    root = Path(root)
    return _load(root / TEACHER_PT, root / TEACHER_JSON, device)


def load_shipped_teacher(device="cpu") -> tuple[OpenCLIPTeacher, dict]:
    """Load the teacher shipped inside the package."""
    return _load(SHIPPED_PT, SHIPPED_JSON, device)


def shipped_teacher_available() -> bool:
    return SHIPPED_PT.is_file() and SHIPPED_JSON.is_file()
