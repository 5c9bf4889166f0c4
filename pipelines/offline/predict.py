"""A prediction pass over a dataset through ``Trainer.predict``: the same ``--trainer.*`` flags as ``fit``
(devices, precision, DDP across GPUs or nodes). Each rank writes its part; rank 0 merges them, keeping
one result per image (the distributed sampler repeats a few to even out the shards)."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from pipelines.data.atomic import save_torch
from pipelines.data.coco_det import detection_collate


class PredictPass(L.LightningModule):
    """Wraps a trained method module; ``fn(module, images, targets) -> [per-image dict with image_id]``."""

    def __init__(self, module: L.LightningModule, fn: Callable):
        super().__init__()
        self.module, self.fn = module, fn

    def predict_step(self, batch, batch_idx):
        images, targets = batch
        with torch.no_grad():
            out = self.fn(self.module, images, targets)
        return [{k: (v.detach().cpu() if torch.is_tensor(v) else v) for k, v in item.items()} for item in out]


def run_pass(trainer: L.Trainer, module, dataset, fn: Callable, batch_size: int, parts_dir: Path, num_workers: int = 0) -> list[dict] | None:
    """Per-image results in dataset order on rank 0 (``None`` on the other ranks)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=detection_collate, num_workers=num_workers)
    module.eval()
    preds = trainer.predict(PredictPass(module, fn), dataloaders=loader, return_predictions=True) or []
    rank, world = trainer.global_rank, trainer.world_size
    items = [item for batch in preds for item in batch]
    if world == 1:
        return _in_order(items, dataset)
    if rank == 0:
        shutil.rmtree(parts_dir, ignore_errors=True)
    trainer.strategy.barrier()
    save_torch(items, parts_dir / f"rank{rank}.pt")
    trainer.strategy.barrier()
    if rank != 0:
        return None
    merged = []
    for r in range(world):
        merged += torch.load(parts_dir / f"rank{r}.pt", map_location="cpu", weights_only=True)
    shutil.rmtree(parts_dir, ignore_errors=True)
    return _in_order(merged, dataset)


def _in_order(items: list[dict], dataset) -> list[dict]:
    by_id = {}
    for item in items:
        by_id.setdefault(int(item["image_id"]), item)
    missing = [i for i in dataset.ids if i not in by_id]
    if missing:
        raise RuntimeError(f"the prediction pass returned no result for {len(missing)} images, e.g. {missing[:5]}")
    return [by_id[i] for i in dataset.ids]
