"""The Trainer and table-row helpers the demo's benches share (CPU, no checkpoints, TensorBoard curves when asked)."""
from __future__ import annotations

import re
from pathlib import Path

import lightning as L


def bench_trainer(steps: int, progress: bool, log_dir: str | Path | None = None, name: str = "run") -> L.Trainer:
    """``log_dir``: TensorBoard curves of this run under ``log_dir/name`` (``tensorboard --logdir log_dir``)."""
    logger = False
    if log_dir is not None:
        from lightning.pytorch.loggers import TensorBoardLogger

        logger = TensorBoardLogger(str(log_dir), name=re.sub(r"[^\w.+-]+", "_", name).strip("_"), version="", default_hp_metric=False)
    return L.Trainer(
        accelerator="cpu", devices=1, max_steps=steps, logger=logger, enable_checkpointing=False, log_every_n_steps=5,
        enable_progress_bar=progress, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
    )


def result_row(name: str, result: dict, columns: list[str]) -> dict:
    """A table row: the method name and ``test/<column>`` of each metric column."""
    return {"method": name, **{k: result[f"test/{k}"] for k in columns[1:]}}
