"""Building a dense teacher cache: the teacher's MaskCLIP-path map of every training image (and of its mirror
image), fp16, in shards of ``shard_size`` images.

Work is split by shard: under DDP / several nodes (the same ``--trainer.*`` flags as ``fit``), rank ``r``
computes shards ``r, r + world, ...`` through ``Trainer.predict`` and writes its own files; rank 0 then
writes one ``index.json`` over all of them. A shard's images are always embedded in the same batches, so
the files are bit-identical whatever the number of processes (on CPU every kernel runs on one thread, because
kernel results depend on the thread count; a process computes as many shards side by side as it has threads).
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from distill.teacher_key import dense_cache_key, key_mismatch
from pipelines.data.atomic import save_json
from pipelines.data.shards import check_shard, write_shard
from pipelines.data.teacher_cache import INDEX, shard_name
from teachers.side_by_side import map_side_by_side, one_kernel_thread


def cache_digest(key: dict, stems: list[str], shard_size: int) -> str:
    blob = json.dumps({"key": key, "stems": stems, "shard_size": shard_size}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _batches(items: list[int], sizes: dict[int, tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Consecutive runs of same-size images, at most ``batch_size`` long (fixed per shard)."""
    out: list[list[int]] = []
    for i in items:
        if out and len(out[-1]) < batch_size and sizes[out[-1][-1]] == sizes[i]:
            out[-1].append(i)
        else:
            out.append([i])
    return out


class DenseCacheJob:
    """What to compute: ``dataset[i]["image"]`` for every ``i`` through ``teacher.encode_dense``."""

    def __init__(self, teacher, dataset, out: str | Path, mode: str, size, stride, flips: bool = True,
                 shard_size: int = 64, batch_size: int = 16):
        if shard_size < 1 or batch_size < 1:
            raise ValueError(f"shard_size and batch_size must be >= 1, got {shard_size} and {batch_size}")
        self.teacher, self.dataset, self.out = teacher, dataset, Path(out)
        self.mode, self.size, self.stride, self.flips = mode, size, stride, flips
        self.shard_size, self.batch_size = shard_size, batch_size
        self.stems = [p.stem for p in dataset.images]
        self.key = {**dense_cache_key(teacher, mode, size, stride), "flips": bool(flips)}
        self.digest = cache_digest(self.key, self.stems, shard_size)
        self.num_shards = (len(self.stems) + shard_size - 1) // shard_size

    def rows(self, shard: int) -> list[int]:
        return list(range(shard * self.shard_size, min(len(self.stems), (shard + 1) * self.shard_size)))

    def check_existing(self, rebuild: bool) -> None:
        """Refuse to mix with a finished cache of another key unless ``rebuild`` (its shards are then replaced)."""
        path = self.out / INDEX
        if not path.is_file() or rebuild:
            return
        old = json.loads(path.read_text())
        diff = key_mismatch(old.get("key", {}), self.key, ignore=())
        if old.get("stems") != self.stems:
            diff.append(f"images: cache has {len(old.get('stems', []))}, this split {len(self.stems)} (or another order)")
        if diff:
            raise ValueError(f"{self.out} holds a teacher cache of another key ({'; '.join(diff)}); "
                             "pass --rebuild to replace it or choose another --out")

    @torch.no_grad()
    def compute(self, shard: int) -> dict:
        rows = self.rows(shard)
        items = {i: self.dataset[i]["image"] for i in rows}
        sizes = {i: tuple(img.shape[-2:]) for i, img in items.items()}
        device = self.teacher.device
        plain, mirrored = [], []
        with one_kernel_thread(device):
            for group in _batches(rows, sizes, self.batch_size):
                images = torch.stack([items[i] for i in group]).to(device)
                plain.append(self.teacher.encode_dense(images, self.mode, self.size, self.stride).half().cpu())
                if self.flips:
                    mirrored.append(self.teacher.encode_dense(images.flip(-1), self.mode, self.size, self.stride).half().cpu())
        tensors = {"dense": torch.cat(plain), "index": torch.tensor(rows)}
        if self.flips:
            tensors["dense_flip"] = torch.cat(mirrored)
        return tensors

    def ensure(self, shard: int) -> tuple[dict, bool]:
        """(record, computed?) — an existing valid shard is kept; anything else is (re)computed, with the reason."""
        path = self.out / shard_name(shard)
        record, why = check_shard(path, self.digest, len(self.rows(shard)))
        if record is not None:
            return record, False
        if why != "missing":
            print(f"[cache] recomputing {path}: {why}")
        return write_shard(path, self.compute(shard), self.digest), True

    def ensure_many(self, shards: list[int]) -> list[tuple[int, bool]]:
        """``(shard, computed?)`` for each; on CPU the shards are computed side by side, one Python thread each with
        single-threaded kernels (torch releases the GIL inside an operator), so a process uses its cores and a
        shard's bytes stay those of a one-thread build."""
        return map_side_by_side(lambda shard: (shard, self.ensure(shard)[1]), shards, self.teacher.device)

    def write_index(self) -> Path:
        records, bad = [], []
        for s in range(self.num_shards):
            record, why = check_shard(self.out / shard_name(s), self.digest, len(self.rows(s)))
            if record is None:
                bad.append(f"{shard_name(s)} ({why})")
            records.append(record)
        if bad:
            raise RuntimeError(f"teacher cache {self.out} is incomplete: {', '.join(bad[:5])}; run the same command again to finish it")
        for stale in self.out.glob("shard-*.safetensors"):  # left by a larger earlier build under --rebuild
            if int(stale.stem.split("-")[1]) >= self.num_shards:
                stale.unlink()
                stale.with_suffix(".sha256").unlink(missing_ok=True)
        index = {"key": self.key, "digest": self.digest, "stems": self.stems, "shard_size": self.shard_size, "shards": records}
        return save_json(index, self.out / INDEX)


class CacheBuildPass(L.LightningModule):
    """``Trainer.predict`` over shard numbers: each rank builds the shards its sampler hands it."""

    def __init__(self, job: DenseCacheJob):
        super().__init__()
        self.job = job
        self.teacher = job.teacher  # moved to the rank's device by Lightning

    def predict_step(self, batch, batch_idx):
        return self.job.ensure_many([int(s) for s in batch])


def build_dense_cache(job: DenseCacheJob, trainer: L.Trainer, rebuild: bool = False) -> dict | None:
    """Build (or finish) the cache; returns a summary on rank 0, ``None`` on the others."""
    job.check_existing(rebuild)
    job.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    # on CPU a rank takes as many shards at a time as it has threads (DenseCacheJob.ensure_many)
    per_step = max(1, torch.get_num_threads()) if job.teacher.device.type == "cpu" else 1
    loader = DataLoader(list(range(job.num_shards)), batch_size=per_step, shuffle=False, collate_fn=lambda b: b)
    job.teacher.eval()
    done = trainer.predict(CacheBuildPass(job), dataloaders=loader, return_predictions=True) or []
    computed = sum(c for batch in done for _, c in batch)
    trainer.strategy.barrier()
    if trainer.global_rank != 0:
        return None
    index = job.write_index()
    seconds = time.time() - start
    return {"index": str(index), "images": len(job.stems), "shards": job.num_shards, "computed_here": int(computed),
            "seconds": seconds, "world_size": trainer.world_size}
