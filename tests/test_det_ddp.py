"""ViLD under 2-process CPU DDP: training runs, and the synced AP equals the single-process AP."""
from __future__ import annotations

import os

import pytest
from conftest import TINY_RN, make_teacher
from ddp_det_script import build
from ddp_harness import launch, validate_checkpoint
from test_det_parts import tiny_detector

from pipelines.data.det_datamodule import WorldDetDataModule
from pipelines.data.proposals_file import save_proposals
from pipelines.offline.proposals import compute_proposals

SCRIPT = os.path.join(os.path.dirname(__file__), "ddp_det_script.py")


@pytest.mark.slow
def test_ddp_fit_and_synced_ap_equals_single_process(tiny_world, tmp_path):
    train = WorldDetDataModule(str(tiny_world)).dataset("train")
    # the script's teacher: its embeddings are checked
    props = compute_proposals(tiny_detector(), train, top_n=6, teacher=make_teacher("ddp-det-rn", TINY_RN))
    proposals = save_proposals(props, tmp_path / "p.pt")
    result = launch(SCRIPT, [str(tiny_world), str(proposals), str(tmp_path), "2"], tmp_path)
    single = validate_checkpoint(*build(str(tiny_world), str(proposals)), tmp_path)
    # each rank scores half of the validation images; the metric gathers detections and ground truth from both
    for key in ("val/AP", "val/AP50", "val/AP50_base", "val/AP50_novel"):
        assert result["metrics"][key] == pytest.approx(single[key], abs=1e-6), key
    assert single["val/AP50"] > 0
