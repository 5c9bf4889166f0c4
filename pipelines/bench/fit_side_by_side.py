"""Independent trainings side by side: forked processes, one torch thread each (opt-in, ``workers`` > 1).

Written for machines where a world training step leaves threads idle; on the 2-core CI-class machine it does not
pay: two trainings at one thread each were slower than the same two in turn on two threads (the demo's detection
section 663 vs 485 s, its segmentation trainings 322 vs 263 s), so the demo trains one after another unless asked
(``--workers``). A child gets exactly one thread, as PyTorch's DataLoader workers do: GNU OpenMP cannot be used again
after fork once the parent has used it, and a child with two threads hangs in its first parallel kernel. So
each job's result is that of the job trained alone in one process on one thread, whatever the machine's core
count and whichever job finishes first (tests/test_fit_side_by_side.py). A child trains only; it hands the
trained state back in a file, and the parent loads it into a module it builds the same way and tests it there,
so every module the caller gets back is an ordinary in-process one.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

import lightning as L
import torch

from pipelines.bench.trainer import bench_trainer


@dataclass
class FitJob:
    """``build()`` returns a fresh module; it runs in the child (to train) and in the parent (to receive the
    trained state), so it must build the same thing both times. ``data``: what it trains on."""

    name: str
    build: Callable[[], L.LightningModule]
    data: L.LightningDataModule
    log_name: str | None = None  # its TensorBoard run (default: name)


def trained_state(module: L.LightningModule) -> dict:
    """What training changed: every entry of the state dict but the frozen teacher's."""
    return {k: v for k, v in module.state_dict().items() if not k.startswith("teacher.")}


def load_trained_state(module: L.LightningModule, state: dict, name: str) -> None:
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("teacher.")]
    if missing or unexpected:
        raise RuntimeError(f"{name}: the trained state does not fit the module built in the parent (missing {missing}, unexpected {unexpected})")


def fit_one(job: FitJob, steps: int, seed: int, progress: bool, log_dir) -> L.LightningModule:
    """Train ``job`` here: seeded, ``steps`` steps, the demo's trainer."""
    module = job.build()
    L.seed_everything(seed, verbose=False)
    bench_trainer(steps, progress, log_dir, job.log_name or job.name).fit(module, job.data)
    return module


def _child(job: FitJob, steps: int, seed: int, log_dir, result: Path) -> None:
    code = 1
    try:
        torch.set_num_threads(1)  # never more after fork (module docstring)
        state = trained_state(fit_one(job, steps, seed, False, log_dir))
        torch.save(state, result.with_suffix(".tmp"))
        os.replace(result.with_suffix(".tmp"), result)  # the parent never reads half a file
        code = 0
    except BaseException:  # whatever it was, the parent reports it with the job's name
        result.with_suffix(".err").write_text(traceback.format_exc())
    finally:
        os._exit(code)  # not the parent's atexit handlers or buffered output, copied by fork


def fit_side_by_side(
    jobs: list[FitJob], steps: int, seed: int, workers: int, log_dir=None, progress: bool = True,
    report: Callable[[str], None] = print,
) -> dict[str, L.LightningModule]:
    """Train every job, ``workers`` at a time (0: one per torch thread), each in a forked one-thread process; return
    the trained modules (built in this process) by name. With one worker, or where ``fork`` is not available, the
    jobs train here one after another on this process's threads (progress bars shown)."""
    threads = torch.get_num_threads()
    workers = max(1, min(workers or threads, len(jobs)))
    if workers == 1 or "fork" not in mp.get_all_start_methods():
        out = {}
        for job in jobs:
            start = time.perf_counter()
            out[job.name] = fit_one(job, steps, seed, progress, log_dir)
            report(f"{job.name}, training: {time.perf_counter() - start:.0f}s")
        return out
    with tempfile.TemporaryDirectory(prefix="ovdistill-fit-") as scratch:
        return _fit_forked(jobs, steps, seed, workers, log_dir, Path(scratch), report)


def _fit_forked(jobs: list[FitJob], steps: int, seed: int, workers: int, log_dir, scratch: Path, report) -> dict:
    ctx = mp.get_context("fork")
    pending, running, done = list(enumerate(jobs)), {}, {}
    start = time.perf_counter()
    while pending or running:
        while pending and len(running) < workers:
            i, job = pending.pop(0)
            result = scratch / f"fit-{i}.pt"
            proc = ctx.Process(target=_child, args=(job, steps, seed, log_dir, result), daemon=True)
            proc.start()
            running[proc.sentinel] = (proc, job, result, time.perf_counter())
        for sentinel in wait(list(running)):
            proc, job, result, began = running.pop(sentinel)
            proc.join()
            if proc.exitcode != 0 or not result.is_file():
                err = result.with_suffix(".err")
                detail = err.read_text() if err.is_file() else f"exit code {proc.exitcode}"
                for other, *_ in running.values():
                    other.kill()
                raise RuntimeError(f"training {job.name!r} in a side-by-side process failed:\n{detail}")
            done[job.name] = result
            report(f"{job.name}, training: {time.perf_counter() - began:.0f}s ({workers} side by side, one thread each)")
    report(f"{len(jobs)} trainings side by side: {time.perf_counter() - start:.0f}s")
    out = {}
    for job in jobs:  # in the caller's order, whatever order they finished in
        module = job.build()
        load_trained_state(module, torch.load(done[job.name], map_location="cpu", weights_only=True), job.name)
        out[job.name] = module
    return out
