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


def score(module, data, split: str = "test", trainer: L.Trainer | None = None) -> dict:
    """``module``'s metrics on ``split`` of ``data``: ``test`` through ``trainer`` (default: a one-step bench trainer
    without progress bar; its logger records them), ``val`` through a plain trainer (the bench trainer skips validation
    while fitting, as the demo does, so settings are chosen on val with this one)."""
    if split == "test":
        return (trainer or bench_trainer(1, False)).test(module, data, verbose=False)[0]
    if split != "val":
        raise ValueError(f"split {split!r}: expected 'val' or 'test'")
    judge = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    return judge.validate(module, data, verbose=False)[0]


def result_row(name: str, result: dict, columns: list[str], split: str = "test") -> dict:
    """A table row: the method name and ``<split>/<column>`` of each metric column."""
    return {"method": name, **{k: result[f"{split}/{k}"] for k in columns[1:]}}
