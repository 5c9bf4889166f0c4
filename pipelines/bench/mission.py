"""The demo's mission as library code: its world, its teacher, the teacher's zero-shot row, prediction overlays."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from pipelines.bench.overlays import comparison_sheet, method_sheet, save_sheet
from pipelines.world import SceneConfig, WorldSpec
from pipelines.world.spec import DEFAULT_SPLITS


def default_cache_dir() -> Path:
    return Path(os.environ.get("OVDISTILL_CACHE", Path.home() / ".cache" / "ovdistill"))


def demo_spec(quick: bool, seed: int) -> WorldSpec:
    splits = {"train": 64, "val": 16, "test": 24} if quick else dict(DEFAULT_SPLITS)
    return WorldSpec(seed=seed, splits=splits, scene=SceneConfig(image_size=96))


def mission_teacher(cache: Path, quick: bool, retrain: bool, teacher_steps: int):
    """The shipped embedded teacher (or one pre-trained into the cache); ``quick`` also checks pre-training."""
    from pipelines.world.pretrain_run import pretrain_teacher
    from pipelines.world.teacher import load_shipped_teacher, load_teacher_dir, shipped_teacher_available

    if quick:
        # check the pre-training stage end to end (a few steps, thrown away) without paying for a real run
        with tempfile.TemporaryDirectory() as tmp:
            pretrain_teacher(tmp, steps=3, batch_size=16, eval_per_class=2, progress=False, num_workers=0)
            load_teacher_dir(tmp)
        print("[teacher] pre-training stage checked (3 steps)")
    if shipped_teacher_available() and not retrain:
        teacher, meta = load_shipped_teacher()
        print(f"[teacher] shipped embedded teacher {teacher.name}")
        return teacher, meta
    out = cache / "teacher"
    if not (out / "teacher.json").is_file():
        print(f"[teacher] pre-training the embedded teacher into {out} ({teacher_steps} steps)")
        pretrain_teacher(out, steps=teacher_steps)
    teacher, meta = load_teacher_dir(out)
    print(f"[teacher] {teacher.name} from {out}")
    return teacher, meta


def crop_rows(teacher, world: Path, quick: bool) -> list[dict]:
    """The teacher's zero-shot accuracy on held-out single-object crops, one row per crop protocol."""
    from pipelines.world import load_spec
    from pipelines.world.zeroshot import crop_record

    spec = load_spec(world)
    rows = []
    for name, acc in crop_record(teacher, spec.classes, per_class=5 if quick else 40).items():
        per_class = acc["per_class"]
        rows.append({"method": name, "accuracy": acc["mean"], **per_class,
                     "novel mean": sum(per_class[c] for c in spec.novel) / len(spec.novel)})
    return rows


@torch.no_grad()
def save_method_overlays(modules: dict, world: Path, out: Path, n: int = 6) -> list[Path]:
    """One sheet per method (image | ground truth | prediction, legends with novel classes marked) and one sheet
    with every method on the same test images (``all methods.png``)."""
    from pipelines.data.seg_folder import SegFolderDataset

    first = next(iter(modules.values()))
    names, novel = first.class_names, first.unseen_names
    ds = SegFolderDataset(world / "images" / "test", world / "labels" / "test", len(names))
    items = [ds[i] for i in range(min(n, len(ds)))]
    images, targets = [it["image"] for it in items], [it["label"] for it in items]
    preds = {}
    for name, module in modules.items():
        module.eval()
        preds[name] = [module.labels_from_logits(module.predict_logits(img[None]))[0] for img in images]
    paths = [save_sheet(method_sheet(images, targets, p, names, novel), out / "overlays" / f"{name}.png") for name, p in preds.items()]
    paths.append(save_sheet(comparison_sheet(images, targets, preds, names, novel), out / "overlays" / "all methods.png"))
    return paths
