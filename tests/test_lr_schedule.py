"""Learning-rate schedules: the factors follow the official recipes (LSeg's poly 0.9, ViLD's step decay), and a real
Lightning fit of a segmentation and a detection module applies them to every parameter group at every step."""
from __future__ import annotations

import json
import math

import lightning as L
import pytest
import torch
from conftest import TINY_RN, make_teacher, tiny_segmenter

from distill import det_modules, seg_modules
from distill.lr_schedule import lr_factor, with_schedule
from pipelines.data.det_datamodule import CocoDetDataModule
from pipelines.data.seg_datamodule import SegFolderDataModule
from students import RegionEmbeddingDetector

NOVEL = ["star", "heart", "ring"]


def test_poly_is_lseg_power_09_decay():
    total = 40
    for step in (0, 1, 10, 20, 39, 40, 55):
        assert lr_factor("poly", step, total) == pytest.approx((1 - min(step, total) / total) ** 0.9)


def test_step_is_vild_decay_at_90_and_95_percent():
    total = 200
    factors = [lr_factor("step", s, total) for s in range(total)]
    assert factors[:180] == [1.0] * 180
    assert factors[180:190] == [0.1] * 10
    assert factors[190:] == [0.01] * 10


def test_warmup_ramps_linearly_then_hands_over():
    assert [lr_factor("constant", s, 100, warmup_steps=4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert lr_factor("poly", 1, 100, warmup_steps=4) == pytest.approx(0.5 * 0.99**0.9)


def test_bad_schedule_and_unbounded_run_are_refused():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="cosine"):
        with_schedule(opt, "cosine", 10)
    with pytest.raises(ValueError, match="max_steps"):
        with_schedule(opt, "poly", math.inf)
    assert with_schedule(opt, "constant", lambda: pytest.fail("a constant rate needs no run length")) is opt


class LrRecorder(L.Callback):
    def __init__(self):
        self.lrs = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.lrs.append([g["lr"] for g in trainer.optimizers[0].param_groups])


def _fit(module, dm, steps, tmp_path):
    rec = LrRecorder()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0, num_sanity_val_steps=0,
                        default_root_dir=tmp_path, callbacks=[rec])
    trainer.fit(module, dm)
    return rec.lrs


def test_a_fit_applies_the_schedule_to_every_group_at_every_step(tiny_world, tmp_path):
    teacher = make_teacher("sched-rn", TINY_RN)
    classes = json.loads((tiny_world / "split.json").read_text())["classes"]
    seg_dm = SegFolderDataModule(str(tiny_world), class_names=["background", *classes], unseen=NOVEL, batch_size=4, num_workers=0)
    steps = 10  # 16 train images at batch 4: the schedule crosses an epoch boundary
    seg = seg_modules.LSeg(teacher, tiny_segmenter(24), lr=1e-3, encoder_lr=1e-4, lr_schedule="poly")
    lrs = _fit(seg, seg_dm, steps, tmp_path / "seg")
    assert len(lrs) == steps
    for step, (head, encoder) in enumerate(lrs):
        assert head == pytest.approx(1e-3 * (1 - step / steps) ** 0.9)
        assert encoder == pytest.approx(1e-4 * (1 - step / steps) ** 0.9)

    torch.manual_seed(0)
    detector = RegionEmbeddingDetector(24, "resnet18", fpn_channels=16, representation_size=32, anchor_sizes=[8, 16, 32, 64, 128],
                                       min_size=64, max_size=64, rpn_pre_nms_top_n_train=50, rpn_post_nms_top_n_train=20,
                                       box_batch_size_per_image=16)
    det_dm = CocoDetDataModule(str(tiny_world), "annotations/instances_train.json", "annotations/instances_val.json", novel=NOVEL,
                               batch_size=4, num_workers=0)
    vild = det_modules.ViLD(teacher, detector, lr=1e-3, lr_schedule="step")
    lrs = _fit(vild, det_dm, 20, tmp_path / "det")
    assert [lr for (lr,) in lrs] == pytest.approx([1e-3] * 18 + [1e-4] + [1e-5])
