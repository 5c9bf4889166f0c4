"""A callback that SIGKILLs its own process after a given training step: a crash nothing can clean up after.

Not a test module; the resume tests put ``tests/`` on ``PYTHONPATH`` so a config can name ``kill_at.KillAtStep``.
"""
from __future__ import annotations

import os
import signal

from lightning.pytorch.callbacks import Callback


class KillAtStep(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # runs before ModelCheckpoint (Lightning orders checkpoint callbacks last): step `step` is lost
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
