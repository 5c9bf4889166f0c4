"""A callback that writes the (DDP-synced) validation metrics to a JSON file on rank 0.

Not a test module; the multi-node tests put ``tests/`` on ``PYTHONPATH`` so a config can name it.
"""
from __future__ import annotations

import json

from lightning.pytorch.callbacks import Callback


class DumpMetrics(Callback):
    def __init__(self, path: str):
        self.path = path

    def on_validation_end(self, trainer, pl_module):
        if trainer.global_rank == 0:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            with open(self.path, "w") as fh:
                json.dump({"metrics": metrics, "world_size": trainer.world_size, "num_nodes": trainer.num_nodes}, fh)
