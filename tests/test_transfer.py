"""Distillation transfers knowledge of classes the student never got labels for (short runs, shipped teacher).

A 96 px world (400 training scenes) and the shipped embedded teacher; students start from the teacher's
trunk, as in the demo; segmentation trains for the demo's 100 steps. The bars are the issue's where a method reaches
them at this budget (MaskCLIP+ >= 3x and +15 over LSeg, and above its own teacher; ViLD-ensemble novel AP50 >= 10),
else margins beyond what the runs measure (dense distillation's cost to the seen classes: at most 8 points, where it
measures -0.2 at 100 steps with this release's teacher (0.4 with the previous, 0.5 with the first; 8.2 at 80): it swings with the budget; the
demo's 5-point bar is read from the demo's own table). With the teacher's signal replaced by noise each test fails
(``python tests/mutations.py noise``): the segmentation test on the dense map, the detection test on
the region embeddings (ViLD-ensemble's gain over ViLD-text and the pseudo-box labeller's precision).
"""
from __future__ import annotations

import inspect
import warnings

import lightning as L
import pytest

from pipelines.world import SceneConfig, WorldSpec, write_world
from pipelines.world.teacher import load_shipped_teacher, save_trunk_weights

SEG_STEPS, DET_STEPS = 100, 80
SEG_MARGIN, DENSE_SEEN_COST = 15.0, 8.0
DET_BAR, ENSEMBLE_GAIN, PSEUDO_MARGIN, PSEUDO_PRECISION, PSEUDO_RECALL = 10.0, 4.0, 3.0, 20.0, 20.0


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
    lseg, maskclip = by["LSeg"], by["MaskCLIP"]
    plus, dense = by["MaskCLIP+"]["mIoU_unseen"], by["LSeg + dense distillation"]["mIoU_unseen"]
    # the bar (>= 3x LSeg and >= +15 points): measured 52.2 vs 0.1 (the previous teacher 51.5 vs 0.7; the first
    # 51.7 vs 1.9); a noise
    # teacher scores far below it
    assert plus >= 3 * lseg["mIoU_unseen"] and plus >= lseg["mIoU_unseen"] + SEG_MARGIN, rows
    # MaskCLIP+ beats its own teacher read densely (the paper's central claim): measured 52.2 vs 26.0 (the previous
    # teacher 51.5 vs 25.5; the first 51.7 vs 19.6)
    assert plus > maskclip["mIoU_unseen"] + 5.0, rows
    # the teacher's map refined by PAMR meets the dense bar (25 unseen): measured 54.0 (raw map 26.0; the previous
    # teacher 56.4 and 25.5; the first 49.2 and 19.6)
    assert by["MaskCLIP + PAMR"]["mIoU_unseen"] >= 25.0, rows
    # dense distillation into a second head transfers, the same bar: measured 20.2 vs 0.1 (the previous teacher at its
    # setting 27.2 vs 0.7; the first at its setting 25.1 vs 1.9); its distillation target replaced by noise fails here
    # (tests/mutations.py "dense distillation target")
    assert dense >= 3 * lseg["mIoU_unseen"] and dense >= lseg["mIoU_unseen"] + SEG_MARGIN, rows
    # ... at a bounded cost to the seen classes: measured -0.2 (56.9 vs 56.7; the previous teacher 0.4, the first 0.0);
    # a distillation that overwhelms the text head costs far more (one head at weight 30: 27.6 points on the demo's val
    # split)
    assert by["LSeg + dense distillation"]["mIoU_seen"] >= lseg["mIoU_seen"] - DENSE_SEEN_COST, rows


@pytest.mark.slow
def test_vild_ensemble_and_pseudo_boxes_find_novel_objects(setting):
    from pipelines.bench.detection import run_det_methods
    from pipelines.bench.pseudo_quality import pseudo_box_quality
    from pipelines.data.det_datamodule import WorldDetDataModule

    world, teacher, trunk, root = setting
    L.seed_everything(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows, modules = run_det_methods(teacher, world, root / "det", steps=DET_STEPS, progress=False, weights=str(trunk["timm"]))
    print(rows)
    by = {r["method"].split(" (")[0]: r for r in rows}
    base_only, text, ensemble = by["base-only detector"], by["ViLD-text"], by["ViLD-ensemble"]
    assert base_only["AP50_novel"] == 0.0  # closed vocabulary: novel classes cannot be named
    assert base_only["AP50_base"] > 5.0, rows  # ... but it did learn the base classes
    # the bar for novel AP50 (measured 30.3 with this release's teacher, teacher on proposals 10.9; the previous
    # teacher 30.8 and 12.4; with the first
    # teacher 23.0 with the val-chosen lr 5e-4 / tau 0.05, 22.0 at lr 1e-3 with ViLD's step decay, 17.5 at a constant
    # rate; teacher on proposals 14.2; a noise region teacher 9.1 at a constant rate)
    assert ensemble["AP50_novel"] >= DET_BAR, rows
    # what the region teacher adds through the image head, over the text head alone (measured with this release's
    # teacher: novel 30.3 vs 6.8, all classes 46.6 vs 15.9; the previous teacher 30.8 vs 10.1, 47.9 vs 17.3; with the first: novel 22.0 vs 4.9, all
    # classes 38.2 vs 12.0 at lr 1e-3; 23.0 vs 8.5 and 39.2 vs 19.3 at lr 5e-4; at a constant rate 17.5 vs 6.6 and
    # 35.1 vs 18.9, and with the region teacher's embeddings
    # replaced by noise 9.1 and 20.2: the blend alone lifts AP a little, the teacher much more)
    assert ensemble["AP50_novel"] >= text["AP50_novel"] + ENSEMBLE_GAIN, rows
    assert ensemble["AP50"] >= text["AP50"] + 8.0, rows
    # pseudo boxes transfer less at this budget (measured 9.1 with this release's teacher, 6.7 with the previous; with the first 10.0 at lr
    # 5e-4, 11.6 at 1e-3; 8.8 at a constant rate)
    assert by["pseudo-box self-training"]["AP50_novel"] >= base_only["AP50_novel"] + PSEUDO_MARGIN, rows
    # ... and it is the teacher that names the novel objects: the demo's labeller (gold_iou 0.5, threshold 0.3) on the
    # test images, whose novel boxes are known (measured precision 26.0, recall 38.6 with this release's teacher; 25.6 /
    # 46.5 with the previous; 31.1 / 53.5 with the first; with the region teacher's embeddings replaced by noise 8.0 / 5.3: the bar sits between)
    labeller = {k: inspect.signature(run_det_methods).parameters[f"pseudo_{k}"].default for k in ("threshold", "gold_iou", "refine")}
    precision, recall = pseudo_box_quality(
        teacher, modules["ViLD-text"].student, WorldDetDataModule(str(world), batch_size=16), "test", top_proposals=32,
        score_threshold=labeller["threshold"], gold_iou=labeller["gold_iou"], refine=labeller["refine"],
    )
    print(f"pseudo boxes on test images: precision {precision:.1f}, recall {recall:.1f}")
    assert precision >= PSEUDO_PRECISION and recall >= PSEUDO_RECALL, (precision, recall)
