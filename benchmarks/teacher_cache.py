"""Cached vs live teacher: one training step of each teacher-hungry method, cache build and read throughput,
and the memory a cache read takes.

    python benchmarks/teacher_cache.py [--real-size] [--steps 3]

World setting: the embedded teacher and the demo's students on 96 px world images (batch 16 seg, 8 det,
100 proposals per image for ViLD-image). ``--real-size`` adds rows with a ViT-B-16 teacher (random
weights) at 448 px dense / 224 px crops and a ResNet-18 Unet / ResNet-50-FPN student. A step is forward +
backward + optimiser step; "cached" reads the teacher's output from the batch (a teacher cache or the
proposals file), "live" runs the teacher. Target: cached >= 3x live; reading never the bottleneck.
"""
from __future__ import annotations

import argparse
import logging
import re
import tempfile
import warnings
from pathlib import Path

import lightning as L
import torch
from bench_common import real_teacher, seconds, table

from distill.det_modules import ViLD
from distill.seg_modules import LSegDenseDistill, MaskCLIPPlus
from pipelines.bench.segmentation import world_student
from pipelines.cache.dense import DenseCacheJob, build_dense_cache
from pipelines.data.seg_datamodule import WorldSegDataModule
from pipelines.world import SceneConfig, WorldSpec, write_world
from students import PixelEmbeddingSegmenter, RegionEmbeddingDetector


def rss_kb() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {k: int(re.search(rf"{k}:\s+(\d+)", text).group(1)) for k in ("RssAnon", "RssFile")}


def step_seconds(module, batch, steps: int) -> float:
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)
    module.train()

    def step():
        loss = module.training_step(batch, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return seconds(step, repeats=steps)


def seg_rows(teacher, student_fn, dm, cache_dir: Path, teacher_args: dict, steps: int, label: str) -> list[list]:
    rows = []
    cached_batch = next(iter(dm.train_dataloader()))
    live_batch = {k: v for k, v in cached_batch.items() if k != "teacher_dense"}
    for cls, extra in ((LSegDenseDistill, {}), (MaskCLIPPlus, {"self_train_after": 1.0})):
        module = cls(teacher, student_fn(), **teacher_args, **extra)
        module._set_vocabulary(dm.vocabulary)
        module.setup("test")
        module.self_training = lambda: False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            live = step_seconds(module, live_batch, steps)
            cached = step_seconds(module, cached_batch, steps)
        n = len(cached_batch["image"])
        rows.append([cls.__name__, label, n, f"{live:.3f}", f"{cached:.3f}", f"{live / cached:.1f}x", f"{n / cached:.1f}"])
    return rows


def vild_row(teacher, detector, images, n_props: int, steps: int, label: str, scales=(1.0, 1.5)) -> list:
    size = images.shape[-1]
    g = torch.Generator().manual_seed(0)
    targets = []
    for i in range(len(images)):
        xy = torch.rand(n_props, 2, generator=g) * size * 0.7
        props = torch.cat([xy, xy + torch.rand(n_props, 2, generator=g) * size * 0.3 + 4], 1).clamp(max=size)
        targets.append({"boxes": props[:2].clone(), "labels": torch.tensor([1, 2]), "proposals": props, "image_id": i})
    names = ["background", "circle", "square", "triangle"]
    module = ViLD(teacher, detector, class_names=names, novel=["triangle"], image_weight=0.5, image_regions=n_props, region_scales=scales)
    module.setup("test")
    live = step_seconds(module, (list(images), targets), steps)
    regions = teacher.encode_regions(images, [t["proposals"] for t in targets], scales).split(n_props)
    cached_targets = [dict(t, teacher_regions=r.half()) for t, r in zip(targets, regions, strict=True)]
    cached = step_seconds(module, (list(images), cached_targets), steps)
    return ["ViLD (image loss)", label, len(images), f"{live:.3f}", f"{cached:.3f}", f"{live / cached:.1f}x", f"{len(images) / cached:.1f}"]


def build_and_read(teacher, dm, out: Path, teacher_args: dict) -> tuple[list[list], float]:
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    job = DenseCacheJob(teacher, dm.dataset("train"), out, "maskclip", teacher_args["teacher_size"], teacher_args["teacher_stride"])
    summary = build_dense_cache(job, trainer, rebuild=True)
    before = rss_kb()
    loader = dm.train_dataloader()
    secs = seconds(lambda: sum(len(b["image"]) for b in loader), repeats=2)
    n = len(loader.dataset)
    after = rss_kb()
    size_mb = sum(p.stat().st_size for p in out.glob("*.safetensors")) / 2**20
    rows = [["cache build (1 process, 1 thread, with mirror images)", f"{summary['images'] / summary['seconds']:.1f} images/s"],
            ["cache read (DataLoader, 0 workers, flips applied)", f"{n / secs:.0f} samples/s"],
            ["cache size on disk", f"{size_mb:.1f} MiB ({summary['images']} images)"],
            ["RSS growth reading it all twice: anonymous / file-backed (page cache, reclaimable)",
             f"{(after['RssAnon'] - before['RssAnon']) / 1024:.1f} / {(after['RssFile'] - before['RssFile']) / 1024:.1f} MiB"]]
    return rows, n / secs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--images", type=int, default=512, help="training images of the benchmark world")
    parser.add_argument("--real-size", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    print(f"machine: cpu, {torch.get_num_threads()} threads\n")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        world = write_world(WorldSpec(seed=3, splits={"train": args.images, "val": 4, "test": 4}, scene=SceneConfig(image_size=96)),
                            tmp / "world", progress=False)
        teacher = real_teacher("embedded")
        targs = {"teacher_size": (96, 96), "teacher_stride": 8}
        dm = WorldSegDataModule(str(world), batch_size=16, teacher_cache=str(tmp / "cache"))
        io_rows, read_rate = build_and_read(teacher, dm, tmp / "cache", targs)

        rows = seg_rows(teacher, lambda: world_student(teacher.embed_dim, 0), dm, tmp / "cache", targs, args.steps, "world, embedded teacher")
        from pipelines.bench.detection import world_detector

        rows.append(vild_row(teacher, world_detector(teacher.embed_dim, 0), torch.rand(8, 3, 96, 96), 100, args.steps, "world, embedded teacher"))
        header = ["method", "setting", "batch", "live s/step", "cached s/step", "cached speed-up", "cached samples/s"]
        print(table(header, rows), flush=True)
        if args.real_size:
            big = real_teacher("ViT-B-16")
            big_world = write_world(WorldSpec(seed=4, splits={"train": 4, "val": 1, "test": 1}, scene=SceneConfig(image_size=448)),
                                    tmp / "big", progress=False)
            bargs = {"teacher_size": (448, 448), "teacher_stride": None}
            bdm = WorldSegDataModule(str(big_world), batch_size=2, teacher_cache=str(tmp / "bigcache"))
            build_and_read(big, bdm, tmp / "bigcache", bargs)
            rows += seg_rows(big, lambda: PixelEmbeddingSegmenter(big.embed_dim, "Unet", "resnet18"), bdm, tmp / "bigcache", bargs, 1,
                             "448 px, ViT-B-16 teacher")
            det = RegionEmbeddingDetector(big.embed_dim, "resnet50", min_size=448, max_size=448)
            # 32 proposals per image, not ViLD's 300: 1,200 ViT-B-16 crops per live step take minutes on a CPU
            rows.append(vild_row(big, det, torch.rand(2, 3, 448, 448), 32, 1, "448 px, ViT-B-16 teacher, 32 proposals"))
    if args.real_size:
        print(table(header, rows))
    print()
    print(table(["cache I/O (world, embedded teacher)", "figure"], io_rows))
    need = max(int(r[2]) / float(r[4]) for r in rows)
    print(f"\nreading the cache: {read_rate:.0f} samples/s; the fastest cached training step consumes {need:.0f} samples/s "
          f"({read_rate / need:.0f}x headroom)")

if __name__ == "__main__":
    main()
