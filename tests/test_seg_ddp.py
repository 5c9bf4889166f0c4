"""Segmentation distillation under 2-process CPU DDP: the synced mIoU equals the single-process one."""
from __future__ import annotations

import os

import pytest
from conftest import TINY_RN, make_teacher, tiny_segmenter
from ddp_harness import launch, validate_checkpoint

from distill.seg_modules import LSegDenseDistill
from pipelines.data.seg_datamodule import WorldSegDataModule

SCRIPT = os.path.join(os.path.dirname(__file__), "ddp_seg_script.py")


@pytest.mark.slow
def test_ddp_fit_and_synced_metric_equals_single_process(tiny_world, tmp_path):
    result = launch(SCRIPT, [str(tiny_world), str(tmp_path), "2"], tmp_path)
    teacher = make_teacher("ddp-rn", TINY_RN)
    module = LSegDenseDistill(teacher, tiny_segmenter(teacher.embed_dim, image_head=True), teacher_stride=8, ensemble=True)
    single = validate_checkpoint(module, WorldSegDataModule(str(tiny_world), batch_size=4, eval_batch_size=2), tmp_path)
    for key in ("val/mIoU", "val/mIoU_seen", "val/mIoU_unseen", "val/hIoU"):
        assert result["metrics"][key] == pytest.approx(single[key], abs=1e-4), key
    assert single["val/mIoU"] > 0
