"""The Trainer and table-row helpers the demo's benches share (CPU, no logger, no checkpoints)."""
from __future__ import annotations

import lightning as L


def bench_trainer(steps: int, progress: bool) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=progress, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
    )


def result_row(name: str, result: dict, columns: list[str]) -> dict:
    """A table row: the method name and ``test/<column>`` of each metric column."""
    return {"method": name, **{k: result[f"test/{k}"] for k in columns[1:]}}
