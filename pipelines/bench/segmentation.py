"""Train and score every open-vocabulary segmentation method on a world (the demo's segmentation table)."""
from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import torch

from distill.seg_modules import LSeg, LSegDenseDistill, MaskCLIP, MaskCLIPPlus
from pipelines.bench.fit_side_by_side import FitJob, fit_side_by_side
from pipelines.bench.trainer import bench_trainer, result_row, score
from pipelines.cache.dense import DenseCacheJob, build_dense_cache
from pipelines.data.seg_datamodule import WorldSegDataModule
from pipelines.data.teacher_cache import INDEX
from students import PixelEmbeddingSegmenter

SEG_COLUMNS = ["method", "mIoU", "mIoU_seen", "mIoU_unseen", "hIoU"]
#: the world students' learning-rate schedule, chosen on val (``benchmarks/choose_on_val.py``: at 100 steps LSeg's poly
#: decay costs the seen classes 3.6 points, so the rate stays constant)
SEG_LR_SCHEDULE = "constant"
#: the training-free MaskCLIP + PAMR row: the teacher's map at this input size and output stride, with MaskCLIP's key
#: smoothing and prompt denoising where ``PAMR_REFINE`` names them (this release's teacher: without, 56.6 unseen on val
#: against 55.4 with; the previous teacher's answer was with), refined by PAMR's authors' 10 steps; chosen on val
#: (``benchmarks/choose_on_val.py``, README)
PAMR_SIZE, PAMR_STRIDE, PAMR_STEPS = 160, 16, 10
PAMR_REFINE: dict = {}

#: the teacher map (input px, output stride) that the dense methods read unless their arguments name another: the
#: training-free MaskCLIP row's and MaskCLIP+'s pseudo labels' (a 16 x 16 map of the 96 px scenes enlarged to 128 px;
#: chosen on val with the previous teacher, ``benchmarks/teacher_choice.py``: 27.0 unseen against 21.5 at 96 px; this
#: release's teacher reads 28.3 there)
WORLD_TEACHER_MAP = {"teacher_size": (128, 128), "teacher_stride": 8}

#: (row name, module class, extra constructor arguments, student arguments). The demo's settings are chosen on the
#: val split by benchmarks/choose_on_val.py (README): MaskCLIP+'s 10% switch point assumes schedules of thousands of
#: steps; dense distillation into a second head (ensemble) distilling the teacher's map of the scene at 112 px (a
#: 14 x 14 map), weight 2, lambda 1 (seen classes from the text head, unseen from the distilled head) and no
#: calibration: with this release's teacher no setting meets more than four of the issue's six per-seed bars over
#: three training seeds, and this one has the best mean hIoU of those (each teacher's own answer: README)
SEG_METHODS = (
    ("LSeg (seen labels only, no distillation)", LSeg, {}, {}),
    ("LSeg + dense distillation (distilled second head)", LSegDenseDistill,
     {"distill_weight": 2.0, "distill_loss": "cosine", "ensemble": True, "ensemble_lambda": 1.0, "calibration": 0.0,
      "teacher_size": (112, 112)},
     {"image_head": True}),
    # self_train_after asked again for the previous release's teacher and kept (README, "Settings chosen on val"): 0.5 by 0.1 hIoU over 0.75
    ("MaskCLIP+ (transductive pseudo labels)", MaskCLIPPlus, {"transductive": True, "self_train_after": 0.5}, {}),
)


#: the world students' decoders. ``FPN`` embeds at 1/4 resolution and upsamples its class logits (LSeg's order):
#: a quarter of the step time of the full-resolution ``Unet`` (benchmarks/student_speed.py, README "Benchmarks")
WORLD_DECODERS = {
    "Unet": {"decoder_channels": [128, 64, 32, 16, 16]},
    "FPN": {"smp_kwargs": {"decoder_pyramid_channels": 64, "decoder_segmentation_channels": 64, "decoder_dropout": 0.0}},
}


def seg_settings_record(methods: tuple = SEG_METHODS) -> dict:
    """The segmentation ``methods`` (``SEG_METHODS``' form) and the training-free rows' settings as JSON-able values:
    part of every reuse key of a finished segmentation table (the demo's sections, ``benchmarks/teacher_choice.py``'s parts)."""
    return {"teacher_map": WORLD_TEACHER_MAP, "pamr_refine": PAMR_REFINE,
            "methods": [[name, cls.__name__, extra, student] for name, cls, extra, student in methods]}


def world_student(
    embed_dim: int, seed: int, encoder: str = "tu-resnet10t", encoder_weights: str | None = None, arch: str = "FPN",
    image_head: bool = False, upsample: str = "logits",
) -> PixelEmbeddingSegmenter:
    """``arch`` (``WORLD_DECODERS``) on the teacher's trunk architecture, initialised from ``encoder_weights`` (see
    ``save_trunk_weights``); ``image_head``: a second embedding head (dense distillation's ensemble); ``upsample``:
    what FPN's head brings to the input resolution (``PixelEmbeddingSegmenter``)."""
    torch.manual_seed(seed)
    return PixelEmbeddingSegmenter(embed_dim, arch, encoder, encoder_weights=encoder_weights, encoder_depth=5, image_head=image_head,
                                   upsample=upsample, **WORLD_DECODERS[arch])


def world_dense_cache(teacher, world, teacher_args: dict, progress: bool = True) -> Path:
    """The teacher cache of the world's training split for these dense settings (built once, beside the world,
    in a directory named by its key digest; an interrupted build finishes here)."""
    dm = WorldSegDataModule(str(world))
    job = DenseCacheJob(teacher, dm.dataset("train"), Path(world).parent, "maskclip", teacher_args["teacher_size"], teacher_args["teacher_stride"])
    job.out /= f"teacher-dense-{job.digest}"  # the digest names the key: another teacher or size, another directory
    if not (job.out / INDEX).is_file():
        trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=progress, enable_model_summary=False)
        summary = build_dense_cache(job, trainer)
        print(f"[segmentation] teacher cache {job.out}: {summary['images']} images in {summary['seconds']:.0f}s")
    return job.out


def world_method_data(teacher, world, cls, extra: dict, batch_size: int = 16, progress: bool = True) -> WorldSegDataModule:
    """A method's world data: for one that reads the teacher's dense map, with the teacher cache of its map
    (``WORLD_TEACHER_MAP`` unless ``extra`` names another size or stride; built on first use)."""
    if not cls.uses_dense_teacher:
        return WorldSegDataModule(str(world), batch_size=batch_size)
    teacher_map = {k: extra.get(k, v) for k, v in WORLD_TEACHER_MAP.items()}
    cache = world_dense_cache(teacher, world, teacher_map, progress)
    return WorldSegDataModule(str(world), batch_size=batch_size, teacher_cache=str(cache))


def _row(name: str, result: dict, split: str = "test") -> dict:
    return result_row(name, result, SEG_COLUMNS, split)


def run_seg_methods(
    teacher, world, steps: int = 300, seed: int = 0, progress: bool = True, batch_size: int = 16,
    encoder_weights: str | None = None, lr: float = 1e-3, prompts: str | None = None, teacher_cache: bool = True,
    log_dir: str | Path | None = None, student_arch: str = "FPN", workers: int = 1, lr_schedule: str = SEG_LR_SCHEDULE,
    pamr_steps: int = PAMR_STEPS, pamr_size: int = PAMR_SIZE, pamr_stride: int = PAMR_STRIDE, pamr_smooth: bool = bool(PAMR_REFINE),
    split: str = "test",
    teacher_map: dict | None = None, methods: tuple = SEG_METHODS,
):
    """Rows (MaskCLIP first, then each trained method) and the trained modules, scored on the test split (``split``:
    ``val`` when a benchmark chooses a setting).

    ``encoder_weights``: student encoder initialisation (the demo passes the teacher's trunk). ``prompts``: a
    learned prompt file the methods use instead of templates. ``teacher_cache``: the dense methods read the
    teacher's maps from a cache (``world_dense_cache``) instead of running the teacher every step. ``log_dir``:
    TensorBoard curves, one run per method. ``student_arch``: the students' decoder (``WORLD_DECODERS``). ``workers``:
    1 (default) trains one after another on all threads; more trains side by side, each in a one-thread process
    (``pipelines.bench.fit_side_by_side``; 0: one per torch thread). ``lr_schedule``: every student's learning-rate
    schedule (``distill.lr_schedule``), chosen on val by ``benchmarks/choose_on_val.py``. ``pamr_steps`` (0: no row),
    ``pamr_size``, ``pamr_stride``, ``pamr_smooth`` (key smoothing and prompt denoising, ``PAMR_REFINE``): the second
    training-free row, MaskCLIP's map at that input size and output stride refined by PAMR (``teachers.pamr``), chosen
    on val by ``benchmarks/choose_on_val.py``. ``teacher_map``: the map
    the MaskCLIP row and the methods without their own read (default ``WORLD_TEACHER_MAP``); ``methods``: the trained
    rows (default ``SEG_METHODS``).
    """
    teacher_args = dict(teacher_map or WORLD_TEACHER_MAP) if teacher.dense_modes() else {}
    dm = WorldSegDataModule(str(world), batch_size=batch_size)
    teacher_args["prompts"] = prompts
    rows, modules = [], {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*val_dataloader.*")
        baseline = MaskCLIP(teacher, **teacher_args)
        rows.append(_row("MaskCLIP (teacher, training-free)", score(baseline, dm, split, bench_trainer(1, progress)), split))
        modules["MaskCLIP"] = baseline
        if pamr_steps and teacher.dense_modes():
            refined = MaskCLIP(teacher, **{**teacher_args, "teacher_size": (pamr_size, pamr_size), "teacher_stride": pamr_stride},
                               pamr_steps=pamr_steps, **(PAMR_REFINE if pamr_smooth else {}))
            rows.append(_row("MaskCLIP + PAMR (teacher, training-free)", score(refined, dm, split, bench_trainer(1, progress)), split))
            modules["MaskCLIP + PAMR"] = refined
        def build(cls, extra: dict, student_args: dict):
            def module():
                student = world_student(teacher.embed_dim, seed, encoder_weights=encoder_weights, arch=student_arch, **student_args)
                encoder_lr = lr / 10 if encoder_weights else None  # keep the pre-trained trunk's features
                return cls(teacher, student, lr=lr, encoder_lr=encoder_lr, lr_schedule=lr_schedule, **{**teacher_args, **extra})
            return module

        def data(cls, extra: dict) -> WorldSegDataModule:
            if teacher_cache and teacher.dense_modes() and cls.uses_dense_teacher:
                return world_method_data(teacher, world, cls, {**teacher_args, **extra}, batch_size, progress)
            return dm

        jobs = [FitJob(name, build(cls, extra, student_args), data(cls, extra), log_name=f"seg {name}")
                for name, cls, extra, student_args in methods]
        trained = fit_side_by_side(jobs, steps, seed, workers, log_dir, progress,
                                   lambda line: progress and print(f"[segmentation] {line}", flush=True))
        for (name, cls, _, _), job in zip(methods, jobs, strict=True):
            module = trained[name]
            rows.append(_row(name, score(module, dm, split, bench_trainer(steps, progress, log_dir, job.log_name)), split))
            modules[cls.__name__] = module
    return rows, modules
