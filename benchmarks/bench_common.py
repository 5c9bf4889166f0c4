"""Shared by the benchmarks: timing with warm-up, the machine's measured matmul rate, teachers at real sizes, the
embedded-teacher issue's segmentation bars.

Not a benchmark itself. Every figure a benchmark prints is a ratio of two things measured in the same run.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def seconds(fn, repeats: int = 3, device="cpu") -> float:
    """Mean wall seconds of ``fn()`` after one warm-up call."""
    fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def matmul_flops(device="cpu", dtype=torch.float32, n: int = 2048) -> float:
    """Measured FLOP/s of one large square ``torch.matmul`` (2 n^3 FLOPs) — the machine's practical limit."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / seconds(lambda: a @ b, repeats=5, device=device)


def counted_flops(fn) -> int:
    """FLOPs of one call as ``torch.utils.flop_counter`` counts them (matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def real_teacher(name: str, device="cpu", precision: str = "fp32"):
    """An open_clip architecture at its real size with random weights (speed does not depend on the values);
    ``embedded`` is the shipped world teacher."""
    if name == "embedded":
        from pipelines.world.teacher import load_shipped_teacher

        return load_shipped_teacher(device, precision)[0]
    from teachers import OpenCLIPTeacher

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return OpenCLIPTeacher(name, None, precision=precision, device=device)


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def demo_setting(seed: int, folder: str, layouts: tuple[str, ...] = ("timm",), precision: str = "auto", teacher_dir: str | None = None):
    """The demo's world (cached like the demo's), the shipped teacher (or the exported one in ``teacher_dir``) at the
    demo's inference ``precision`` and its fp32 trunk as student weights, one file per layout under the cache's
    ``folder``: ``(world, teacher, {layout: path})``."""
    from pipelines.bench.mission import default_cache_dir, demo_spec
    from pipelines.bench.teacher_precision import teacher_precision
    from pipelines.world import write_world
    from pipelines.world.teacher import load_shipped_teacher, load_teacher_dir, save_trunk_weights

    spec = demo_spec(False, seed)
    world = write_world(spec, default_cache_dir() / f"world-{spec.fingerprint()}", progress=False)
    teacher, _ = load_teacher_dir(teacher_dir) if teacher_dir else load_shipped_teacher()
    tmp = default_cache_dir() / folder
    trunk = {k: str(save_trunk_weights(teacher, tmp / f"trunk_{k}.pt", k)) for k in layouts}
    return world, teacher.at_precision(teacher_precision(precision)[0]), trunk


def unseen_bar(unseen: float, lseg_unseen: float) -> bool:
    """The issue's transfer bar for a segmentation distillation method: unseen mIoU >= 3x and >= +15 over LSeg's."""
    return unseen >= max(3 * lseg_unseen, lseg_unseen + 15)


#: the issue's bar on what dense distillation may cost the seen classes against LSeg (mIoU points)
DENSE_SEEN_COST = 5.0


def scoring_world(root) -> Path:
    """The demo's world without its training images (val and test only), written under ``root``: what teacher probes
    are scored on."""
    from pipelines.bench.mission import demo_spec
    from pipelines.world import write_world

    spec = demo_spec(False, 0)
    spec.splits = {"train": 0, "val": spec.splits["val"], "test": spec.splits["test"]}
    return write_world(spec, Path(root) / "world", progress=False)


def dense_table_header(split: str, sizes: list[int], stride: int = 8) -> str:
    """The teacher probes' table header: tight crops, then one MaskCLIP cell per input size."""
    return (f"\nworld {split}; dense cells: seen / unseen (hIoU); background named as an object within 8 px / farther\n"
            + "| teacher | tight crops (mean / worst) | " + " | ".join(f"MaskCLIP {s} px / {stride}" for s in sizes) + " |\n"
            + "|---|---|" + "---|" * len(sizes))
