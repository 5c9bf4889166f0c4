"""``StepTimer``: a Lightning callback that records the wall time of every training step (benchmarks read it).

On a GPU each step's time is taken after ``torch.cuda.synchronize`` (kernels run asynchronously, so the clock
would otherwise stop before the step's work is done), and the peak GPU memory allocated is written too."""
from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import torch


class StepTimer(L.Callback):
    """Writes ``{"step_seconds": [...], "gpu_peak_gb": float | None}`` to ``out`` when training ends (rank 0)."""

    def __init__(self, out: str):
        self.out, self.times, self._start = Path(out), [], 0.0

    @staticmethod
    def _sync(pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._sync(pl_module)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._sync(pl_module)
        self.times.append(time.perf_counter() - self._start)

    def on_train_end(self, trainer, pl_module):
        if trainer.global_rank == 0:
            peak = torch.cuda.max_memory_allocated(pl_module.device) / 2**30 if pl_module.device.type == "cuda" else None
            self.out.write_text(json.dumps({"step_seconds": self.times, "gpu_peak_gb": peak}))
