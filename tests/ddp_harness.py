"""Shared by the DDP tests: fit + validate in a fresh multi-process run, then re-validate in one process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import lightning as L
import torch


def fit_validate_save(module, dm, out: str, devices: int, steps: int = 3) -> None:
    """Inside the launched script: a few DDP steps, a synced validation, a checkpoint and metrics.json."""
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", max_steps=steps,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, dm)
    metrics = trainer.validate(module, dm, verbose=False)[0]
    trainer.save_checkpoint(os.path.join(out, "model.ckpt"))
    if trainer.global_rank == 0:
        with open(os.path.join(out, "metrics.json"), "w") as fh:
            json.dump({"metrics": metrics, "world_size": trainer.world_size}, fh)


def launch(script: str, args: list[str], out) -> dict:
    """Run ``script`` with 2 processes' worth of arguments; returns its metrics.json."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((out / "metrics.json").read_text())
    assert result["world_size"] == 2
    return result


def validate_checkpoint(module, dm, out) -> dict:
    """Load the DDP run's checkpoint (which must leave the teacher out) and validate in one process."""
    ckpt = torch.load(out / "model.ckpt", map_location="cpu", weights_only=False)
    assert not any(k.startswith("teacher.") for k in ckpt["state_dict"]), "checkpoints must not carry the frozen teacher"
    module.load_state_dict(ckpt["state_dict"], strict=False)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return trainer.validate(module, dm, verbose=False)[0]
