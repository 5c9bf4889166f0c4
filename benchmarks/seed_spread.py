"""How much the demo's test tables move with the training seed, and whether every bar holds at each seed.

    python benchmarks/seed_spread.py [--seeds 0 1 2] [--skip seg det]

The demo's world (seed 0), shipped teacher, teacher precision, steps and batch sizes; only the students' seed
changes (initialisation of the heads, data order, augmentation). Seed 0 reproduces the demo's own tables. Nothing here
chooses a setting: the settings were chosen on val (``benchmarks/choose_on_val.py``), and this reports the spread of
the figures the README prints. Prints two markdown tables: per method, the headline metrics at each seed with mean and
standard deviation; per bar of the embedded-teacher issue, the value at each seed and how many seeds meet it.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import warnings
from pathlib import Path

from bench_common import DENSE_SEEN_COST, demo_setting, table, unseen_bar

SEG_STEPS, DET_STEPS, DET_BATCH = 100, 200, 8  # the demo's defaults (ovdistill demo --help)
DET_NOVEL = ("ViLD-text", "ViLD (text + image)", "ViLD-ensemble", "pseudo-box")


def row(rows: list[dict], prefix: str) -> dict:
    return next(r for r in rows if r["method"].startswith(prefix))


def seg_bars(rows: list[dict]) -> dict[str, tuple[float, bool]]:
    """The issue's segmentation bars: (the figure it is read from, met)."""
    lseg, maskclip = row(rows, "LSeg (seen"), row(rows, "MaskCLIP (teacher")
    bars = {}
    for name, prefix in (("dense distillation", "LSeg + dense"), ("MaskCLIP+", "MaskCLIP+")):
        unseen = row(rows, prefix)["mIoU_unseen"]
        bars[f"{name} unseen >= 3x and +15 over LSeg"] = (unseen, unseen_bar(unseen, lseg["mIoU_unseen"]))
    plus = row(rows, "MaskCLIP+")["mIoU_unseen"] - maskclip["mIoU_unseen"]
    bars["MaskCLIP+ minus MaskCLIP, unseen > 0"] = (plus, plus > 0)
    cost = lseg["mIoU_seen"] - row(rows, "LSeg + dense")["mIoU_seen"]
    bars["seen mIoU dense distillation costs vs LSeg <= 5"] = (cost, cost <= DENSE_SEEN_COST)
    return bars


def det_bars(rows: list[dict]) -> dict[str, tuple[float, bool]]:
    """The issue's detection bars: every distillation method >= 10 novel AP50; the best beats teacher-on-proposals."""
    bars = {f"{name} novel AP50 >= 10": (row(rows, name)["AP50_novel"], row(rows, name)["AP50_novel"] >= 10) for name in DET_NOVEL}
    margin = max(row(rows, name)["AP50_novel"] for name in DET_NOVEL) - row(rows, "teacher on proposals")["AP50_novel"]
    bars["best student minus teacher-on-proposals, novel > 0"] = (margin, margin > 0)
    return bars


def spread_table(per_seed: list[list[dict]], metrics: list[str], seeds: list[int]) -> str:
    lines = []
    for r in per_seed[0]:
        for m in metrics:
            values = [row(rows, r["method"])[m] for rows in per_seed]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            lines.append([r["method"], m, *(f"{v:.1f}" for v in values), f"{statistics.mean(values):.1f}", f"{sd:.1f}"])
    return table(["method", "metric", *(f"seed {s}" for s in seeds), "mean", "sd"], lines)


def bars_table(per_seed_bars: list[dict], seeds: list[int]) -> str:
    lines = []
    for name in per_seed_bars[0]:
        values = [bars[name] for bars in per_seed_bars]
        lines.append([name, *(f"{v:.1f}{'' if ok else ' (missed)'}" for v, ok in values), f"{sum(ok for _, ok in values)}/{len(values)}"])
    return table(["bar", *(f"seed {s}" for s in seeds), "met"], lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--skip", nargs="*", choices=("seg", "det"), default=[])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    world, teacher, trunk = demo_setting(0, "seed-spread", layouts=("smp", "timm"))
    tasks = []
    if "seg" not in args.skip:
        from pipelines.bench.segmentation import run_seg_methods

        def seg(seed: int, _out: Path) -> list[dict]:
            return run_seg_methods(teacher, world, steps=SEG_STEPS, seed=seed, progress=False, encoder_weights=trunk["smp"])[0]

        tasks.append(("segmentation (test mIoU %)", seg, ["mIoU_seen", "mIoU_unseen"], seg_bars))
    if "det" not in args.skip:
        from pipelines.bench.detection import run_det_methods

        def det(seed: int, out: Path) -> list[dict]:
            return run_det_methods(teacher, world, out, steps=DET_STEPS, seed=seed, progress=False, batch_size=DET_BATCH,
                                   weights=trunk["timm"])[0]

        tasks.append(("detection (test AP50 %)", det, ["AP50_base", "AP50_novel"], det_bars))
    for title, run, metrics, bars in tasks:
        per_seed = []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                per_seed.append(run(seed, Path(tmp)))
            print(f"{title}, seed {seed}: " + "; ".join(f"{r['method']} {', '.join(f'{r[m]:.1f}' for m in metrics)}" for r in per_seed[-1]),
                  flush=True)
        print(f"\n{title}, training seeds {args.seeds} on the demo's world\n\n{spread_table(per_seed, metrics, args.seeds)}\n")
        print(f"{bars_table([bars(rows) for rows in per_seed], args.seeds)}\n", flush=True)


if __name__ == "__main__":
    main()
