"""Distillation transfers knowledge of classes the student never got labels for (short runs, shipped teacher).

A 96 px world (400 training scenes) and the shipped embedded teacher; students start from the teacher's
trunk, as in the demo. The margins are well below what the same runs measure (see the README table), so
the tests check direction and size of the effect without depending on the last decimal.
"""
from __future__ import annotations

import warnings

import lightning as L
import pytest

from pipelines.world import SceneConfig, WorldSpec, write_world
from pipelines.world.teacher import load_shipped_teacher, save_trunk_weights

SEG_STEPS, DET_STEPS = 80, 80
SEG_MARGIN, SEG_DISTILL_MARGIN, DET_MARGIN = 1.0, 2.0, 5.0


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    spec = WorldSpec(seed=3, splits={"train": 400, "val": 8, "test": 100}, scene=SceneConfig(image_size=96))
    world = write_world(spec, root / "world", progress=False)
    teacher, _ = load_shipped_teacher()
    trunk = {layout: save_trunk_weights(teacher, root / f"trunk_{layout}.pt", layout) for layout in ("smp", "timm")}
    return world, teacher, trunk, root


@pytest.mark.slow
def test_segmentation_distillation_beats_lseg_on_unseen(setting):
    from pipelines.bench.segmentation import run_seg_methods

    world, teacher, trunk, _ = setting
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows, _ = run_seg_methods(teacher, world, steps=SEG_STEPS, progress=False, encoder_weights=str(trunk["smp"]))
    print(rows)
    by = {r["method"].split(" (")[0]: r for r in rows}
    lseg = by["LSeg"]["mIoU_unseen"]
    assert by["MaskCLIP+"]["mIoU_unseen"] >= lseg + SEG_MARGIN, rows
    assert by["LSeg + dense distillation"]["mIoU_unseen"] >= lseg + SEG_DISTILL_MARGIN, rows


@pytest.mark.slow
def test_vild_ensemble_and_pseudo_boxes_find_novel_objects(setting):
    from pipelines.bench.detection import run_det_methods

    world, teacher, trunk, root = setting
    L.seed_everything(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows, _ = run_det_methods(teacher, world, root / "det", steps=DET_STEPS, progress=False, weights=str(trunk["timm"]))
    print(rows)
    by = {r["method"].split(" (")[0]: r for r in rows}
    base_only = by["base-only detector"]
    assert base_only["AP50_novel"] == 0.0  # closed vocabulary: novel classes cannot be named
    assert base_only["AP50_base"] > 5.0, rows  # ... but it did learn the base classes
    assert by["ViLD-ensemble"]["AP50_novel"] >= base_only["AP50_novel"] + DET_MARGIN, rows
    assert by["pseudo-box self-training"]["AP50_novel"] >= base_only["AP50_novel"] + DET_MARGIN, rows
