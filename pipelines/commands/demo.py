"""``ovdistill demo``: the embedded default mission, offline, on this machine.

1. builds (or reuses, from the cache directory) the synthetic world;
2. loads the embedded teacher shipped with the package (or pre-trains one with ``--retrain-teacher``);
3. measures the teacher's zero-shot quality: crop classification and MaskCLIP dense mIoU;
4. runs every distillation method the project has on the world and scores it on the test split;
5. prints one results table, writes it as ``results.md`` + ``results.json`` (after every finished section,
   atomically; ``sections/*.json`` lets a re-run with the same settings skip what is done) and saves
   prediction overlays.

``--quick`` shrinks every stage (CI) but still runs each of them, including a few teacher
pre-training steps.
"""
from __future__ import annotations

import argparse
import inspect
import os
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

import torch

from pipelines.bench.mission import (
    crop_rows,
    default_cache_dir,
    demo_spec,
    mission_teacher,
    save_method_overlays,
)
from pipelines.bench.report import finished_section, save_section, write_results
from pipelines.bench.teacher_precision import CHOICES, teacher_precision
from pipelines.world import write_world


def chosen_settings(*functions) -> dict:
    """The plain-valued keyword defaults of ``functions`` (the settings chosen on val live there): part of a section's
    reuse key, so a release that changes one of them retrains instead of reusing an old table."""
    return {f"{fn.__name__}.{k}": p.default for fn in functions for k, p in inspect.signature(fn).parameters.items()
            if isinstance(p.default, (bool, int, float, str))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovdistill demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smallest settings that still run every stage (CI)")
    parser.add_argument("--out", default="ovdistill-demo", help="where results.md/json and overlays go")
    parser.add_argument("--cache-dir", default=None, help="world/teacher cache (default $OVDISTILL_CACHE or ~/.cache/ovdistill)")
    parser.add_argument("--retrain-teacher", action="store_true", help="pre-train the teacher instead of using the shipped one")
    parser.add_argument("--teacher-steps", type=int, default=2400, help="pre-training steps with --retrain-teacher (the shipped recipe: 2400)")
    parser.add_argument("--seg-steps", type=int, default=100, help="training steps of each segmentation method (batch 16)")
    parser.add_argument("--det-steps", type=int, default=200,
                        help="training steps of each detection method (benchmarks/det_curves.py: fewer miss the bars)")
    parser.add_argument("--det-batch-size", type=int, default=8, help="detection batch size (16 transfers better, twice the time)")
    parser.add_argument("--workers", type=int, default=1,
                        help="1: trainings one after another on all threads; N: N side by side, each in a one-thread process "
                             "(0: one per torch thread; slower on 2 cores, see README)")
    parser.add_argument("--skip", nargs="*", choices=("seg", "det"), default=[], help="leave a task out")
    parser.add_argument("--prompts", default="templates",
                        help="class embeddings: 'templates' (hand-written), 'learned' (CoOp context trained on base boxes first) or a prompt file")
    parser.add_argument("--teacher-precision", choices=CHOICES, default="auto",
                        help="the frozen teacher's inference passes: auto = bf16 on a CPU with native bf16 (about 2x faster, "
                             "README), fp32 elsewhere; students train in fp32")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the world (another seed renders another world) and of the students' training and learned prompts")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    start = time.time()
    cache = (Path(args.cache_dir) if args.cache_dir else default_cache_dir()).expanduser().resolve()
    out = Path(args.out).expanduser().resolve()  # every file below is handed on as an absolute path
    out.mkdir(parents=True, exist_ok=True)

    spec = demo_spec(args.quick, args.seed)
    world = write_world(spec, cache / f"world-{spec.fingerprint()}")
    print(f"[world] {world}: {spec.splits}; base={list(spec.base)} novel={list(spec.novel)}")

    teacher, meta = mission_teacher(cache, args.quick, args.retrain_teacher, args.teacher_steps)
    from pipelines.world.teacher import save_trunk_weights

    # the teacher's trunk initialises the students (the world's stand-in for ImageNet / CLIP weights): in fp32, whatever
    # precision the teacher's own passes then run in
    trunk = {layout: save_trunk_weights(teacher, out / "init" / f"trunk_{layout}.pt", layout) for layout in ("smp", "timm")}
    precision, why = teacher_precision(args.teacher_precision)
    teacher = teacher.at_precision(precision)
    print(f"[teacher] inference in {precision} ({why})")
    teacher_rows = crop_rows(teacher, world, args.quick)
    for row in teacher_rows:
        print(f"[teacher] zero-shot accuracy, {row['method']}: {row['accuracy']:.1f}% (novel {row['novel mean']:.1f}%, worst class "
              f"{min(row[c] for c in spec.classes):.1f}%)")

    crop_cols = ["method", "accuracy", *spec.classes, "novel mean"]
    command = "ovdistill demo " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[2:]))
    meta = {"command": command.strip(), "world": spec.to_dict(), "teacher": teacher.name, "teacher_precision": precision}
    sections = {"Teacher zero-shot crop classification (accuracy %, held-out single-object crops)": (teacher_rows, crop_cols)}
    write_results(out, sections, meta)  # each finished section is on disk at once
    prompts, suffix = None, ""
    if args.prompts == "learned":
        from pipelines.bench.prompts import learn_world_prompts

        prompts, scores = learn_world_prompts(teacher, world, out / "init" / "prompts.safetensors", 20 if args.quick else 200, args.seed)
        print(f"[prompts] learned context on base boxes: val crop accuracy base {scores['val/acc_base']:.1f}%, "
              f"novel {scores['val/acc_novel']:.1f}%")
        suffix = ", learned prompts"
    elif args.prompts != "templates":
        prompts, suffix = Path(args.prompts).expanduser().resolve(), f", prompts {Path(args.prompts).name}"
    # the teacher's name holds its weights file's SHA-256: a release that ships other weights retrains
    base = {"world": spec.fingerprint(), "teacher": teacher.name, "seed": args.seed, "quick": args.quick, "prompts": args.prompts,
            "workers": args.workers, "threads": torch.get_num_threads(), "teacher_precision": precision}  # these change the floats
    overlays = []
    if "seg" not in args.skip:
        from pipelines.bench.segmentation import (
            SEG_COLUMNS,
            run_seg_methods,
            seg_settings_record,
            world_student,
        )

        seg_steps = 8 if args.quick else args.seg_steps
        settings = {**base, "steps": seg_steps, "chosen": chosen_settings(run_seg_methods, world_student), **seg_settings_record()}
        seg_rows = finished_section(out, "segmentation", settings)
        if seg_rows is not None:
            print(f"[segmentation] reusing the finished section in {out / 'sections'} (same settings)")
        else:
            print(f"[segmentation] MaskCLIP + {seg_steps}-step training of LSeg, LSeg+distillation, MaskCLIP+")
            seg_rows, seg_modules = run_seg_methods(teacher, world, steps=seg_steps, seed=args.seed, encoder_weights=str(trunk["smp"]),
                                                   prompts=str(prompts) if prompts else None, log_dir=out / "tensorboard",
                                                   workers=args.workers)
            overlays = save_method_overlays(seg_modules, world, out)
            save_section(out, "segmentation", settings, seg_rows)
        sections[f"Segmentation on the world's test split (mIoU %, unseen = novel classes{suffix})"] = (seg_rows, SEG_COLUMNS)
        write_results(out, sections, meta)
    if "det" not in args.skip:
        from pipelines.bench.detection import (
            DET_COLUMNS,
            run_det_methods,
            world_detector,
        )

        det_steps = 6 if args.quick else args.det_steps
        settings = {**base, "steps": det_steps, "batch_size": args.det_batch_size, "chosen": chosen_settings(run_det_methods, world_detector)}
        det_rows = finished_section(out, "detection", settings)
        if det_rows is not None:
            print(f"[detection] reusing the finished section in {out / 'sections'} (same settings)")
        else:
            print(f"[detection] {det_steps}-step training of base-only, ViLD-text, ViLD, ViLD-ensemble, pseudo-box detectors")
            det_rows, _ = run_det_methods(
                teacher, world, out / "detection", steps=det_steps, seed=args.seed, weights=str(trunk["timm"]),
                batch_size=args.det_batch_size, prompts=str(prompts) if prompts else None, log_dir=out / "tensorboard",
                workers=args.workers,
            )
            save_section(out, "detection", settings, det_rows)
        sections[f"Detection on the world's test split (box AP %, novel = classes without training boxes{suffix})"] = (det_rows, DET_COLUMNS)
    meta["wall_s"] = time.time() - start
    side = "one after another" if args.workers == 1 else f"{args.workers or torch.get_num_threads()} side by side, one thread each"
    meta["machine"] = (f"{os.cpu_count()} CPU cores ({platform.machine()}), {torch.get_num_threads()} torch threads, trainings {side}, "
                       f"teacher in {precision}, " + (f"GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no GPU"))
    md = write_results(out, sections, meta)
    print()
    print(md)
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}, {len(overlays)} overlay sheets in {out / 'overlays'}")
    print(f"training curves: tensorboard --logdir {out / 'tensorboard'}")
    print(f"demo finished in {time.time() - start:.0f}s")
    return 0
