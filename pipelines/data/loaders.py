"""Data loaders whose training position survives a kill, so a resumed run equals the uninterrupted one.

Three things make ``fit --ckpt_path last`` after a SIGKILL reproduce the uninterrupted run exactly (CPU):

- the training order is a function of ``(seed, epoch)`` only (a ``DistributedSampler``, also on one
  device), and a checkpoint records the epoch and how many batches of it were consumed
  (``train_position``), which the resumed sampler skips;
- random augmentation draws from a generator seeded by ``(seed, epoch, index)`` (``augment_generator``),
  never from the global RNG, whose use depends on how far the loader has pre-fetched;
- every loader has its own ``generator``, so building one (a resumed run builds an extra one for its
  sanity check) draws nothing from the global RNG. The model's own global-RNG state is in the
  checkpoint too (``distill.rng_state``).

``seed`` defaults to Lightning's global seed (``seed_everything``, the CLI's ``seed_everything:``).
"""
from __future__ import annotations

import hashlib
import os

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .batches import check_batches


def global_seed() -> int:
    return int(os.environ.get("PL_GLOBAL_SEED", "0"))


def augment_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator that depends on nothing but ``(seed, epoch, index)``."""
    digest = hashlib.blake2b(f"{seed}/{epoch}/{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


def split_key(key) -> tuple[int, int | None]:
    """``(index, epoch)`` from what a ``ResumableSampler(with_epoch=True)`` yields, or ``(index, None)``."""
    return (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), None)


class ResumableSampler(DistributedSampler):
    """Shuffled per ``(seed, epoch)``; after a resume, the batches already consumed in that epoch are skipped.

    ``resume``: ``{"epoch": e, "batches": n}`` from a checkpoint. The epoch is read from ``trainer`` when
    one is given: Lightning may build a loader's iterator before it calls ``set_epoch`` (always so for a
    loader reloaded each epoch), and the first iteration after a resume must already be the resumed epoch's.
    With ``with_epoch`` it yields ``(index, epoch)`` so the dataset can seed its augmentation.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, num_replicas: int = 1, rank: int = 0,
                 with_epoch: bool = False, resume: dict | None = None, trainer=None):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.batch_size, self.with_epoch, self.resume, self.trainer = batch_size, with_epoch, resume, trainer
        if resume is not None and resume.get("world_size", num_replicas) != num_replicas:
            raise ValueError(
                f"the checkpoint was written by a run on {resume['world_size']} device(s) and this run has {num_replicas}: "
                "each device's share of an epoch depends on the count, so resume with the same number of devices"
            )

    def __iter__(self):
        if self.trainer is not None:
            self.set_epoch(int(self.trainer.current_epoch))
        indices = list(super().__iter__())
        if self.resume is not None and self.resume.get("epoch") == self.epoch:
            indices = indices[int(self.resume["batches"]) * self.batch_size :]
        elif self.resume is not None and self.epoch > self.resume.get("epoch", -1):
            self.resume = None  # only the resumed epoch is partial
        return iter([(i, self.epoch) for i in indices] if self.with_epoch else indices)


def train_position(trainer) -> dict | None:
    """The epoch and the number of its training batches the trainer has consumed (Lightning's own count)."""
    if trainer is None or getattr(trainer.state, "fn", None) != "fit":
        return None
    return {"epoch": int(trainer.current_epoch), "batches": int(trainer.fit_loop.epoch_loop.batch_progress.current.ready),
            "world_size": int(trainer.world_size)}


def train_loader(ds: Dataset, batch_size: int, collate_fn, num_workers: int, trainer=None, seed: int | None = None,
                 with_epoch: bool = False, resume: dict | None = None) -> DataLoader:
    seed = global_seed() if seed is None else seed
    replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
    sampler = ResumableSampler(ds, batch_size, seed, replicas, rank, with_epoch=with_epoch, resume=resume, trainer=trainer)
    return DataLoader(
        ds, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate_fn, drop_last=True,
        persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(seed),
    )


def eval_loader(ds: Dataset, batch_size: int, collate_fn, num_workers: int) -> DataLoader:
    return DataLoader(
        ds, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_fn,
        persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(global_seed()),
    )


class SplitLoaders:
    """LightningDataModule mixin: resumable training loader, plain val / test / predict loaders.

    The host defines ``dataset(split)``, ``_train_dataset()``, ``collate`` and ``_batch_sizes()``
    (train, eval, workers); the mixin records the training position in every checkpoint
    (``state_dict``) and hands it to the next training loader (``load_state_dict``).
    """

    _resume: dict | None = None
    #: the split ``predict`` reads (``ovdistill predict --predictions.split val`` sets it: settings are chosen on val)
    predict_split: str = "test"

    def train_dataloader(self):
        batch, _, workers = self._batch_sizes()
        trainer = getattr(self, "trainer", None)
        resume, self._resume = self._resume, None
        ds = self._train_dataset()
        check_batches(len(ds), batch, trainer)
        return train_loader(ds, batch, self.collate, workers, trainer, with_epoch=True, resume=resume)

    def val_dataloader(self):
        return self._eval("val")

    def test_dataloader(self):
        return self._eval("test")

    def predict_dataloader(self):
        return self._eval(self.predict_split)

    def _eval(self, split: str) -> DataLoader:
        _, batch, workers = self._batch_sizes()
        return eval_loader(self._eval_dataset(split), batch, self.collate, workers)

    def _eval_dataset(self, split: str) -> Dataset:
        """The dataset that val / test / predict read (a host may give evaluation its own view)."""
        return self.dataset(split)

    def state_dict(self) -> dict:
        position = train_position(getattr(self, "trainer", None))
        return {"train_position": position} if position else {}

    def load_state_dict(self, state: dict) -> None:
        self._resume = state.get("train_position")
