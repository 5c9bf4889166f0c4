"""``StepTimer``: a Lightning callback that records the wall time of every training step (benchmarks read it)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L


class StepTimer(L.Callback):
    """Writes ``{"step_seconds": [...]}`` to ``out`` when training ends (rank 0)."""

    def __init__(self, out: str):
        self.out, self.times, self._start = Path(out), [], 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter() - self._start)

    def on_train_end(self, trainer, pl_module):
        if trainer.global_rank == 0:
            self.out.write_text(json.dumps({"step_seconds": self.times}))
