"""The demo's learned prompt: CoOp context trained on the world's base boxes (``--prompts learned``)."""
from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L

from distill.prompt_modules import PromptTuning
from pipelines.data.det_datamodule import WorldDetDataModule

from .trainer import bench_trainer


def learn_world_prompts(teacher, world, path: str | Path, steps: int = 200, seed: int = 0, n_ctx: int = 4,
                        progress: bool = True) -> tuple[Path, dict]:
    """Train unified context on the train split's base boxes; returns the prompt file and val crop accuracy."""
    L.seed_everything(seed, verbose=False)
    module = PromptTuning(teacher, method="coop", n_ctx=n_ctx, lr=2e-3)
    dm = WorldDetDataModule(str(world), batch_size=16)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        bench_trainer(steps, progress).fit(module, dm)
        judge = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
        scores = judge.validate(module, dm, verbose=False)[0]
    return module.export(path), scores
