"""Which embedded teacher the demo ships, and which of its maps the MaskCLIP row and MaskCLIP+ read: chosen on **val**.

    python benchmarks/teacher_choice.py --teachers shipped runs/tuned [--seeds 0 1 2] [--maps 96 128] [--skip seg det]
        [--dense 'tuned={"distill_weight": 2, "ensemble_lambda": 1, "calibration": 0}']

Each teacher (``shipped`` or a ``pretrain-teacher --out`` directory) runs the demo's whole mission at the demo's
settings (world seed 0, steps, batch sizes, teacher precision; the students start from that teacher's trunk and learn
from its maps and crops) and is scored on the **val** split, at each training seed. Segmentation: the training-free
MaskCLIP row and MaskCLIP+'s pseudo labels read the teacher's map of the 96 px scenes at each input size of ``--maps``
(output stride 8; the first is the full table, the others add those two rows); dense distillation keeps its own map.
``--dense TAG=JSON`` judges one teacher (``TAG``: ``shipped`` or its directory's name) at its own dense-distillation
setting (the dense question of ``choose_on_val.py --teacher``), JSON updating the demo's dense row's arguments.
Finished parts are kept as JSON under ``--out`` with the settings they were computed with, keyed as the demo keys its
own sections (segmentation: the teacher's weights, the methods and their settings; detection: the teacher's weights and
the detection settings), and reused only under the same ones, so an interrupted run goes on and a release that changes
a setting runs again.

Prints, per teacher and map, the mean val rows over the seeds and, per bar of the embedded-teacher issue (its targets
read on val, plus the teacher's own dense target, MaskCLIP unseen >= 25), how many seeds meet it. The rule: the
teacher and map meeting the most bars over the seeds, ties broken by MaskCLIP's mean unseen mIoU. Nothing is scored
on test here; the demo then reports the choice on test once.
"""
from __future__ import annotations

import argparse
import json
import statistics
import warnings
from pathlib import Path

from bench_common import demo_setting, table
from seed_spread import DET_BATCH, DET_STEPS, SEG_STEPS, det_bars, row, seg_bars

from pipelines.bench.report import finished_section, save_section

MASKCLIP_TARGET = 25.0  # the target for the teacher's raw dense map, unseen mIoU


def seg_methods(dense: dict, full: bool) -> tuple:
    """The demo's trained segmentation rows, dense distillation's arguments updated by ``dense`` (a second head or not
    follows its ``ensemble``); with ``full`` False only MaskCLIP+ (the rows that read the teacher's map)."""
    from pipelines.bench.segmentation import SEG_METHODS

    methods = []
    for name, cls, extra, student in SEG_METHODS:
        if name.startswith("LSeg + dense") and dense:
            extra = {**extra, **{k: tuple(v) if isinstance(v, list) else v for k, v in dense.items()}}
            student = {**student, "image_head": bool(extra.get("ensemble", False))}
        methods.append((name, cls, extra, student))
    return tuple(methods) if full else tuple(m for m in methods if m[0].startswith("MaskCLIP+"))


def seg_part(teacher, world, trunk, seed: int, size: int, methods: tuple) -> list[dict]:
    from pipelines.bench.segmentation import PAMR_STEPS, run_seg_methods

    full = any(m[0].startswith("LSeg") for m in methods)
    rows, _ = run_seg_methods(teacher, world, steps=SEG_STEPS, seed=seed, encoder_weights=trunk, progress=False, split="val",
                              teacher_map={"teacher_size": (size, size), "teacher_stride": 8}, methods=methods,
                              pamr_steps=PAMR_STEPS if full else 0)
    return rows


def det_part(teacher, world, trunk, seed: int, out: Path) -> list[dict]:
    from pipelines.bench.detection import run_det_methods

    rows, _ = run_det_methods(teacher, world, out, steps=DET_STEPS, seed=seed, weights=trunk, batch_size=DET_BATCH,
                              progress=False, split="val")
    return rows


def seg_settings(teacher, methods: tuple) -> dict:
    """What a stored segmentation part was computed with, as the demo keys its own section: the teacher's name (its
    weights' SHA-256), the methods and their settings, the budget. A part stored under other settings is run again."""
    from pipelines.bench.segmentation import run_seg_methods, seg_settings_record, world_student
    from pipelines.commands.demo import chosen_settings

    return {"teacher": teacher.name, "seg_steps": SEG_STEPS, **seg_settings_record(methods),
            "chosen": chosen_settings(run_seg_methods, world_student)}


def det_settings(teacher) -> dict:
    """A detection part's settings, as the demo keys its detection section: the teacher, the budget, the detection
    settings (no segmentation setting, so a change there reuses these parts)."""
    from pipelines.bench.detection import run_det_methods, world_detector
    from pipelines.commands.demo import chosen_settings

    return {"teacher": teacher.name, "det_steps": DET_STEPS, "det_batch": DET_BATCH,
            "chosen": chosen_settings(run_det_methods, world_detector)}


def dense_setting(text: str) -> tuple[str, dict]:
    """``TAG=JSON`` -> (tag, the dense row's argument updates)."""
    tag, sep, body = text.partition("=")
    try:
        value = json.loads(body) if sep else None
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"--dense {text!r}: the part after '=' is not JSON ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--dense takes TAG=JSON with a JSON object, got {text!r}")
    return tag, value


def cached(folder: Path, key: str, settings: dict, compute, *args, **kwargs) -> list[dict]:
    """``compute(*args, **kwargs)``'s rows, or those an earlier run stored as ``folder/sections/KEY.json`` with the
    same ``settings``."""
    rows = finished_section(folder, key, settings)
    if rows is None:
        rows = compute(*args, **kwargs)
        save_section(folder, key, settings, rows)
    return rows


def all_bars(seg: list[dict] | None, det: list[dict] | None) -> dict[str, tuple[float, bool]]:
    bars = {}
    if seg is not None:
        unseen = row(seg, "MaskCLIP (teacher")["mIoU_unseen"]
        bars[f"MaskCLIP unseen >= {MASKCLIP_TARGET:.0f}"] = (unseen, unseen >= MASKCLIP_TARGET)
        bars.update(seg_bars(seg))
    if det is not None:
        bars.update(det_bars(det))
    return bars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teachers", nargs="+", default=["shipped"], help="'shipped' or pretrain-teacher --out directories")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--maps", type=int, nargs="+", default=[96, 128], help="input px of the MaskCLIP / MaskCLIP+ map (stride 8)")
    parser.add_argument("--skip", nargs="*", choices=("seg", "det"), default=[])
    parser.add_argument("--out", default="runs/teacher-choice", help="finished parts (JSON) and detection proposals")
    parser.add_argument("--dense", type=dense_setting, action="append", default=[], metavar="TAG=JSON",
                        help="a teacher's own dense-distillation setting, e.g. max8='{\"distill_weight\": 2, \"calibration\": 0}'")
    args = parser.parse_args()
    own_dense = dict(args.dense)
    tags = ["shipped" if name == "shipped" else Path(name).name for name in args.teachers]
    if unknown := sorted(set(own_dense) - set(tags)):
        parser.error(f"--dense names {unknown}, which are not among the teachers {tags}")
    warnings.filterwarnings("ignore")
    out = Path(args.out)
    summary = []
    for name, tag in zip(args.teachers, tags, strict=True):
        world, teacher, trunk = demo_setting(0, f"teacher-choice-{tag}", ("smp", "timm"), teacher_dir=None if name == "shipped" else name)
        per_map = {size: [] for size in args.maps}
        dense = own_dense.get(tag, {})
        if dense:
            print(f"[{tag}] dense distillation at its own setting: {json.dumps(dense)}", flush=True)
        for seed in args.seeds:
            det = None
            if "det" not in args.skip:
                det = cached(out / tag, f"det-seed{seed}", det_settings(teacher), det_part, teacher, world, trunk["timm"], seed,
                             out / tag / f"det-seed{seed}")
                print(f"[{tag}] seed {seed} detection: " + "; ".join(
                    f"{r['method']} {r['AP50_base']:.1f} / {r['AP50_novel']:.1f}" for r in det), flush=True)
            full = None
            for k, size in enumerate(args.maps):
                seg = None
                if "seg" not in args.skip:
                    methods = seg_methods(dense, full=k == 0)
                    seg = cached(out / tag, f"seg-seed{seed}-{size}", seg_settings(teacher, methods), seg_part, teacher, world, trunk["smp"],
                                 seed, size, methods)
                    if k == 0:
                        full = seg
                    else:  # LSeg and dense distillation do not read this map: the first map's rows
                        seg = [r for r in full if not r["method"].startswith(("MaskCLIP (", "MaskCLIP+"))] + seg
                    print(f"[{tag}] seed {seed} segmentation at {size} px: " + "; ".join(
                        f"{r['method']} {r['mIoU_seen']:.1f} / {r['mIoU_unseen']:.1f}" for r in seg), flush=True)
                per_map[size].append((seg, det))
        for size, runs in per_map.items():
            bars = [all_bars(seg, det) for seg, det in runs]
            met = sum(ok for b in bars for _, ok in b.values())
            lines = [[bar, *(f"{b[bar][0]:.1f}{'' if b[bar][1] else ' (missed)'}" for b in bars), f"{sum(b[bar][1] for b in bars)} of {len(bars)}"]
                     for bar in bars[0]]
            print(f"\n{tag}, MaskCLIP / MaskCLIP+ map {size} px / 8 (val): bars met {met} of {sum(len(b) for b in bars)}\n")
            print(table(["bar (val)", *(f"seed {s}" for s in args.seeds), "seeds met"], lines))
            means = []
            for section, cols in ((0, ("mIoU_seen", "mIoU_unseen", "hIoU")), (1, ("AP50_base", "AP50_novel"))):
                if runs[0][section] is None:
                    continue
                for r in runs[0][section]:
                    values = [[next(x for x in run[section] if x["method"] == r["method"])[c] for run in runs] for c in cols]
                    means.append([r["method"], " / ".join(f"{statistics.mean(v):.1f}" for v in values)])
            print()
            print(table(["method", "val mean over seeds (seen / unseen (hIoU) or AP50 base / novel)"], means))
            unseen = statistics.mean(row(run[0], "MaskCLIP (teacher")["mIoU_unseen"] for run in runs) if runs[0][0] else 0.0
            summary.append((met, unseen, tag, size))
    best = max(summary)
    print("\n" + table(["teacher", "map", "bars met", "MaskCLIP unseen (mean)"], [[t, f"{s} px", m, f"{u:.1f}"] for m, u, t, s in summary]))
    print(f"\nchosen (most bars, then MaskCLIP unseen): {best[2]} at {best[3]} px")


if __name__ == "__main__":
    main()
