"""Train and score every open-vocabulary segmentation method on a world (the demo's segmentation table)."""
from __future__ import annotations

import warnings

import lightning as L
import torch

from distill.seg_modules import LSeg, LSegDenseDistill, MaskCLIP, MaskCLIPPlus
from pipelines.bench.trainer import bench_trainer, result_row
from pipelines.data.seg_datamodule import WorldSegDataModule
from students import PixelEmbeddingSegmenter

SEG_COLUMNS = ["method", "mIoU", "mIoU_seen", "mIoU_unseen", "hIoU"]

#: (row name, module class, extra constructor arguments)
SEG_METHODS = (
    ("LSeg (seen labels only, no distillation)", LSeg, {}),
    ("LSeg + dense distillation", LSegDenseDistill, {"distill_weight": 1.0, "distill_loss": "cosine"}),
    # MaskCLIP+'s 10% assumes schedules of thousands of steps; the demo's switch point is chosen on the val
    # split by benchmarks/choose_on_val.py (README)
    ("MaskCLIP+ (transductive pseudo labels)", MaskCLIPPlus, {"transductive": True, "self_train_after": 1.0}),
)


def world_student(embed_dim: int, seed: int, encoder: str = "tu-resnet10t", encoder_weights: str | None = None) -> PixelEmbeddingSegmenter:
    """Unet on the teacher's trunk architecture, initialised from ``encoder_weights`` (see ``save_trunk_weights``)."""
    torch.manual_seed(seed)
    return PixelEmbeddingSegmenter(
        embed_dim, "Unet", encoder, encoder_weights=encoder_weights, encoder_depth=5, decoder_channels=[128, 64, 32, 16, 16]
    )


def _row(name: str, result: dict) -> dict:
    return result_row(name, result, SEG_COLUMNS)


def run_seg_methods(
    teacher, world, steps: int = 300, seed: int = 0, progress: bool = True, batch_size: int = 16,
    encoder_weights: str | None = None, lr: float = 1e-3, prompts: str | None = None,
):
    """Rows (MaskCLIP first, then each trained method) and the trained modules, scored on the test split.

    ``encoder_weights``: student encoder initialisation (the demo passes the teacher's trunk). ``prompts``: a
    learned prompt file the methods use instead of templates.
    """
    teacher_args = {"teacher_size": (96, 96), "teacher_stride": 8} if teacher.dense_modes() else {}
    teacher_args["prompts"] = prompts
    dm = WorldSegDataModule(str(world), batch_size=batch_size)
    rows, modules = [], {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*val_dataloader.*")
        baseline = MaskCLIP(teacher, **teacher_args)
        result = bench_trainer(1, progress).test(baseline, dm, verbose=False)[0]
        rows.append(_row("MaskCLIP (teacher, training-free)", result))
        modules["MaskCLIP"] = baseline
        for name, cls, extra in SEG_METHODS:
            L.seed_everything(seed, verbose=False)
            student = world_student(teacher.embed_dim, seed, encoder_weights=encoder_weights)
            encoder_lr = lr / 10 if encoder_weights else None  # keep the pre-trained trunk's features
            module = cls(teacher, student, lr=lr, encoder_lr=encoder_lr, **teacher_args, **extra)
            trainer = bench_trainer(steps, progress)
            trainer.fit(module, dm)
            rows.append(_row(name, trainer.test(module, dm, verbose=False)[0]))
            modules[cls.__name__] = module
    return rows, modules
