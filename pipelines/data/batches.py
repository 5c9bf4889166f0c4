"""Checks shared by the data modules' training loaders."""
from __future__ import annotations


def check_batches(n_images: int, batch_size: int, trainer=None) -> None:
    """A training split smaller than one batch per device trains nothing (``drop_last``): say so."""
    world = getattr(trainer, "world_size", 1) or 1
    if n_images < batch_size * world:
        raise ValueError(
            f"the training split has {n_images} images but one step needs batch_size={batch_size} x {world} device(s); "
            "the partial batch is dropped, so nothing would train: lower batch_size or add images"
        )
