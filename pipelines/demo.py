"""``ovdistill demo``: the embedded default mission, offline, on this machine.

1. builds (or reuses, from the cache directory) the synthetic world;
2. loads the embedded teacher shipped with the package (or pre-trains one with ``--retrain-teacher``);
3. measures the teacher's zero-shot quality: crop classification and MaskCLIP dense mIoU;
4. runs every distillation method the project has on the world and scores it on the test split;
5. prints one results table, writes it as ``results.md`` + ``results.json`` and saves prediction overlays.

``--quick`` shrinks every stage (CI) but still runs each of them, including a few teacher
pre-training steps.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from pipelines.report import overlay_panel, save_overlays, write_results
from pipelines.world import SceneConfig, WorldSpec, write_world

SEG_COLUMNS = ["method", "mIoU", "mIoU_seen", "mIoU_unseen", "hIoU"]


def default_cache_dir() -> Path:
    return Path(os.environ.get("OVDISTILL_CACHE", Path.home() / ".cache" / "ovdistill"))


def demo_spec(quick: bool, seed: int) -> WorldSpec:
    splits = {"train": 64, "val": 16, "test": 24} if quick else {"train": 1200, "val": 200, "test": 300}
    return WorldSpec(seed=seed, splits=splits, scene=SceneConfig(image_size=96))


def _teacher(args, cache: Path):
    from pipelines.embedded_teacher import load_shipped_teacher, load_teacher_dir, shipped_teacher_available
    from pipelines.teacher_cmd import pretrain_teacher

    if args.quick:
        # check the pre-training stage end to end (a few steps, thrown away) without paying for a real run
        with tempfile.TemporaryDirectory() as tmp:
            pretrain_teacher(tmp, steps=3, batch_size=16, eval_per_class=2, progress=False, num_workers=0)
            load_teacher_dir(tmp)
        print("[teacher] pre-training stage checked (3 steps)")
    if shipped_teacher_available() and not args.retrain_teacher:
        teacher, meta = load_shipped_teacher()
        print(f"[teacher] shipped embedded teacher {teacher.name}")
        return teacher, meta
    out = cache / "teacher"
    if not (out / "teacher.json").is_file():
        print(f"[teacher] pre-training the embedded teacher into {out} ({args.teacher_steps} steps)")
        pretrain_teacher(out, steps=args.teacher_steps)
    teacher, meta = load_teacher_dir(out)
    print(f"[teacher] {teacher.name} from {out}")
    return teacher, meta


def _teacher_rows(teacher, world: Path, quick: bool):
    from pipelines.world.zeroshot import crop_accuracy, dense_miou

    from pipelines.world import load_spec

    spec = load_spec(world)
    acc, per_class = crop_accuracy(teacher, spec.classes, per_class=5 if quick else 40)
    crop_row = {"method": "teacher zero-shot (crops)", "accuracy": acc}
    crop_row.update({c: per_class[c] for c in spec.classes})
    crop_row["novel mean"] = sum(per_class[c] for c in spec.novel) / len(spec.novel)
    seg = dense_miou(teacher, world, "test", size=(96, 96), output_stride=8)
    seg_row = {"method": "MaskCLIP (teacher, training-free)", **{k: seg[k] for k in SEG_COLUMNS[1:]}}
    return crop_row, seg_row


def _overlays(teacher, world: Path, out: Path, n: int = 4) -> Path:
    from pipelines.data.seg_folder import SegFolderDataset
    from pipelines.world import load_spec

    spec = load_spec(world)
    names = ["background", *spec.classes]
    ds = SegFolderDataset(world / "images" / "test", world / "labels" / "test", len(names))
    text = teacher.encode_text(names)
    panels = []
    for i in range(min(n, len(ds))):
        item = ds[i]
        pred = teacher.dense_logits(item["image"][None], text, size=(96, 96), output_stride=8).argmax(1)[0]
        panels.append(overlay_panel(item["image"], item["label"], pred, names))
    return save_overlays(out / "overlays" / "maskclip.png", panels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovdistill demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smallest settings that still run every stage (CI)")
    parser.add_argument("--out", default="ovdistill-demo", help="where results.md/json and overlays go")
    parser.add_argument("--cache-dir", default=None, help="world/teacher cache (default $OVDISTILL_CACHE or ~/.cache/ovdistill)")
    parser.add_argument("--retrain-teacher", action="store_true", help="pre-train the teacher instead of using the shipped one")
    parser.add_argument("--teacher-steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    start = time.time()
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    spec = demo_spec(args.quick, args.seed)
    world = write_world(spec, cache / f"world-{spec.fingerprint()}")
    print(f"[world] {world}: {spec.splits}; base={list(spec.base)} novel={list(spec.novel)}")

    teacher, meta = _teacher(args, cache)
    crop_row, seg_row = _teacher_rows(teacher, world, args.quick)
    seg_rows = [seg_row]

    crop_cols = ["method", "accuracy", *spec.classes, "novel mean"]
    sections = {
        "Teacher zero-shot crop classification (accuracy %, held-out single-object crops)": ([crop_row], crop_cols),
        "Segmentation on the world's test split (mIoU %, unseen = novel classes)": (seg_rows, SEG_COLUMNS),
    }
    overlay = _overlays(teacher, world, out)
    command = "ovdistill demo " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[2:]))
    md = write_results(out, sections, {"command": command.strip(), "world": spec.to_dict(), "teacher": teacher.name})
    print()
    print(md)
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}, {overlay}  ({time.time() - start:.0f}s)")
    return 0
