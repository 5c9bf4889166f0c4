"""Segmentation distillation under 2-process CPU DDP: the synced mIoU equals the single-process one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import lightning as L
import pytest
import torch
from conftest import TINY_RN, make_teacher, tiny_segmenter

from distill.seg_modules import LSegDenseDistill
from pipelines.data.seg_datamodule import WorldSegDataModule

SCRIPT = os.path.join(os.path.dirname(__file__), "ddp_seg_script.py")


@pytest.mark.slow
def test_ddp_fit_and_synced_metric_equals_single_process(tiny_world, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, SCRIPT, str(tiny_world), str(tmp_path), "2"], capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["world_size"] == 2

    teacher = make_teacher("ddp-rn", TINY_RN)
    module = LSegDenseDistill(teacher, tiny_segmenter(teacher.embed_dim), teacher_stride=8)
    ckpt = torch.load(tmp_path / "model.ckpt", map_location="cpu", weights_only=False)
    assert not any(k.startswith("teacher.") for k in ckpt["state_dict"]), "checkpoints must not carry the frozen teacher"
    module.load_state_dict(ckpt["state_dict"], strict=False)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = trainer.validate(module, WorldSegDataModule(str(tiny_world), batch_size=4, eval_batch_size=2), verbose=False)[0]
    for key in ("val/mIoU", "val/mIoU_seen", "val/mIoU_unseen", "val/hIoU"):
        assert result["metrics"][key] == pytest.approx(single[key], abs=1e-4), key
    assert single["val/mIoU"] > 0
