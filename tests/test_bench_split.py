"""The demo's benches score the split they are asked for: ``val`` when a benchmark chooses a setting, ``test`` for
the table the demo reports once."""
from __future__ import annotations

import shutil

import pytest


def test_seg_bench_on_val_scores_the_val_images(timm_cnn_teacher, tiny_world, tmp_path):
    """The MaskCLIP row scored on ``val`` equals the row scored on ``test`` of a copy of the world whose test images
    and labels are the val ones (and differs from the real test row: the two splits hold other scenes)."""
    from pipelines.bench.segmentation import run_seg_methods
    from pipelines.bench.trainer import score

    swapped = tmp_path / "world"
    shutil.copytree(tiny_world, swapped)
    for kind in ("images", "labels"):
        shutil.rmtree(swapped / kind / "test")
        shutil.copytree(tiny_world / kind / "val", swapped / kind / "test")
    kwargs = {"steps": 1, "progress": False, "methods": (), "pamr_steps": 0, "teacher_map": {"teacher_size": (64, 64), "teacher_stride": 8}}
    on_val = run_seg_methods(timm_cnn_teacher, tiny_world, split="val", **kwargs)[0]
    on_test = run_seg_methods(timm_cnn_teacher, tiny_world, **kwargs)[0]
    val_as_test = run_seg_methods(timm_cnn_teacher, swapped, **kwargs)[0]
    assert [r["method"] for r in on_val] == ["MaskCLIP (teacher, training-free)"]
    assert on_val == val_as_test
    assert on_val != on_test
    with pytest.raises(ValueError, match="expected 'val' or 'test'"):
        score(None, None, "train")


def test_seg_bench_trains_on_the_teacher_cache_of_the_map_it_is_given(timm_cnn_teacher, tiny_world):
    """MaskCLIP+ at another map than the demo's reads a teacher cache of that map (one of the demo's map would be
    refused by the module's key check)."""
    import json

    from pipelines.bench.segmentation import SEG_METHODS, run_seg_methods

    plus = tuple(m for m in SEG_METHODS if m[0].startswith("MaskCLIP+"))
    rows, modules = run_seg_methods(timm_cnn_teacher, tiny_world, steps=1, progress=False, methods=plus, pamr_steps=0,
                                    teacher_map={"teacher_size": (48, 48), "teacher_stride": 8})
    assert [r["method"] for r in rows] == ["MaskCLIP (teacher, training-free)", plus[0][0]]
    assert modules["MaskCLIPPlus"].hparams.teacher_size == (48, 48)
    keys = [json.loads(p.read_text())["key"] for p in tiny_world.parent.glob("teacher-dense-*/index.json")]
    assert [48, 48] in [k["size"] for k in keys]
