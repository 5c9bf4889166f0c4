"""Train and score every open-vocabulary detection method on a world (the demo's detection table).

Order follows the methods' dependencies: the ViLD-text detector's RPN (trained on base boxes only) is the
proposer for the teacher-on-proposals baseline, for the offline ViLD-image proposals and for the
teacher's pseudo boxes. Trainings come in two groups (``pipelines.bench.fit_side_by_side``, side by side when
asked): the base-only detector and ViLD-text, then ViLD, ViLD-ensemble and pseudo-box training once their
proposals and pseudo labels exist.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import lightning as L
import torch

from distill.det_modules import (
    BaseOnlyDetector,
    PseudoBoxDetector,
    TeacherOnProposals,
    ViLD,
)
from pipelines.bench.fit_side_by_side import FitJob, fit_side_by_side
from pipelines.bench.trainer import bench_trainer, result_row, score
from pipelines.data.det_datamodule import WorldDetDataModule
from pipelines.data.proposals_file import save_proposals
from pipelines.offline.pseudo_labels import save_pseudo_labels
from pipelines.offline.round_one import proposals_and_pseudo_labels
from students import RegionEmbeddingDetector

DET_COLUMNS = ["method", "AP50_base", "AP50_novel", "AP50", "AP"]
#: the world detectors' learning-rate schedule, chosen on val (``benchmarks/choose_on_val.py``: ViLD's step decay)
DET_LR_SCHEDULE = "step"
#: the world detectors' AdamW learning rate, chosen on val with tau (``benchmarks/choose_on_val.py``)
DET_LR = 5e-4


def world_detector(embed_dim: int, seed: int, weights: str | None = None, image_head: bool = False, tau: float = 0.05) -> RegionEmbeddingDetector:
    """Faster R-CNN on the teacher's trunk architecture (timm ResNet-10-T), sized for 96 px scenes.

    ``tau`` (ViLD: 0.01) and the other world settings are chosen on the val split by
    ``benchmarks/choose_on_val.py``; the README gives its table.
    """
    torch.manual_seed(seed)
    return RegionEmbeddingDetector(
        embed_dim, "timm:resnet10t", weights=weights, norm="bn", trainable_layers=5, fpn_channels=64,
        representation_size=256, anchor_sizes=[8, 16, 32, 64, 128], min_size=96, max_size=96, image_head=image_head, tau=tau,
        rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=150, rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
        box_batch_size_per_image=128, box_score_thresh=0.0,  # every scored box, as the configs: AP is not truncated
    )


def _row(name: str, result: dict, split: str = "test") -> dict:
    return result_row(name, result, DET_COLUMNS, split)


def run_det_methods(
    teacher, world, out: str | Path, steps: int = 200, seed: int = 0, progress: bool = True, batch_size: int = 16,
    weights: str | None = None, lr: float = DET_LR, image_weight: float = 0.1, ensemble_image_weight: float = 0.25, image_regions: int = 32,
    pseudo_threshold: float = 0.3, pseudo_gold_iou: float = 0.5, pseudo_refine: bool = True, prompts: str | None = None,
    log_dir: str | Path | None = None,
    workers: int = 1, lr_schedule: str = DET_LR_SCHEDULE, split: str = "test",
) -> tuple[list[dict], dict]:
    """Rows for the detection table (scored on ``split``: ``val`` when a benchmark chooses a setting) and the trained
    modules; proposals / pseudo labels are written to ``out``.

    ``image_weight`` / ``ensemble_image_weight``: the ViLD-image loss weight of the single-head ViLD and of ViLD-ensemble's
    image head, chosen on the val split. ``pseudo_threshold`` / ``pseudo_gold_iou`` are the pseudo-box labeller's settings chosen on the val split
    (``benchmarks/choose_on_val.py``); ``pseudo_refine``: the labeller moves proposals by the proposer's box regression
    (chosen there too). ``prompts``: a learned prompt file every classifier uses instead of templates.
    ``log_dir``: TensorBoard curves, one run per method. ``workers``: 1 (default) trains one after another on all
    threads; more trains side by side, each in a one-thread process (``pipelines.bench.fit_side_by_side``; 0: one per
    torch thread). ``lr_schedule``: every detector's learning-rate schedule (``distill.lr_schedule``), chosen on val.
    """
    out = Path(out).resolve()  # the data modules resolve relative paths against the world, not the cwd
    out.mkdir(parents=True, exist_ok=True)
    dm = WorldDetDataModule(str(world), batch_size=batch_size)
    rows, modules = [], {}

    def timed(what: str, fn):
        start = time.perf_counter()
        result = fn()
        report(f"{what}: {time.perf_counter() - start:.0f}s")
        return result

    def report(line: str) -> None:
        if progress:  # where the section's minutes go
            print(f"[detection] {line}", flush=True)

    def job(name: str, build, data) -> FitJob:
        return FitJob(name, build, data, log_name=f"det {name}")

    def fit_and_test(jobs: list[FitJob]) -> dict:
        trained = fit_side_by_side(jobs, steps, seed, workers, log_dir, progress, report)
        for j in jobs:
            start = time.perf_counter()
            rows.append(_row(j.name, score(trained[j.name], j.data, split, bench_trainer(steps, progress, log_dir, j.log_name)), split))
            report(f"{j.name}, {split}: {time.perf_counter() - start:.0f}s")
        modules.update(trained)
        return trained

    def detector(image_head: bool = False) -> RegionEmbeddingDetector:
        return world_detector(teacher.embed_dim, seed, weights, image_head=image_head)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*val_dataloader.*")
        L.seed_everything(seed, verbose=False)
        base_name = "base-only detector (closed vocabulary, no distillation)"
        trained = fit_and_test([
            job(base_name, lambda: BaseOnlyDetector(teacher, detector(), class_names=dm.class_names, novel=dm.novel, lr=lr,
                                                    lr_schedule=lr_schedule, prompts=prompts), dm),
            job("ViLD-text", lambda: ViLD(teacher, detector(), lr=lr, lr_schedule=lr_schedule, prompts=prompts), dm),
        ])
        proposer = trained["ViLD-text"].student

        baseline = TeacherOnProposals(teacher, proposer, prompts=prompts)
        rows.insert(0, _row("teacher on proposals (CLIP-on-crops)",
                            timed(f"teacher on proposals, {split}", lambda: score(baseline, dm, split, bench_trainer(1, progress))), split))
        modules["teacher on proposals"] = baseline

        train_set = dm.dataset("train")
        train_set.flip = False
        proposals = out / "proposals_train.pt"
        pseudo = out / "pseudo_labels_train.json"
        # one proposer pass for both teacher steps; the pseudo labeller does not read the stored table: its proposals are
        # first moved by the proposer's box regression (pseudo_refine) and embedded again
        table, coco = timed("proposals + teacher regions + teacher pseudo labels (train)", lambda: proposals_and_pseudo_labels(
            proposer, teacher, train_set, dm.class_names, dm.novel, image_regions, prompts=prompts, score_threshold=pseudo_threshold,
            gold_iou=pseudo_gold_iou, refine=pseudo_refine,
        ))
        save_proposals(table, proposals)
        with_props = WorldDetDataModule(str(world), batch_size=batch_size, proposals=str(proposals))
        save_pseudo_labels(coco, pseudo)
        with_pseudo = WorldDetDataModule(str(world), batch_size=batch_size, pseudo_labels=str(pseudo))
        vild = {"lr": lr, "lr_schedule": lr_schedule, "image_regions": image_regions, "prompts": prompts}
        fit_and_test([
            job("ViLD (text + image)", lambda: ViLD(teacher, detector(), image_weight=image_weight, **vild), with_props),
            job("ViLD-ensemble", lambda: ViLD(teacher, detector(image_head=True), ensemble=True, image_weight=ensemble_image_weight, **vild),
                with_props),
            job("pseudo-box self-training (teacher labels)",
                lambda: PseudoBoxDetector(teacher, detector(), lr=lr, lr_schedule=lr_schedule, prompts=prompts), with_pseudo),
        ])
    return rows, modules
