"""The teacher's dense zero-shot figures on a world split (``dense_quality``, benchmarks/teacher_quality.py): mIoU and
where the background mistakes lie, checked with stub teachers whose predictions are known, against numpy recomputations."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from pipelines.world.generate import load_spec
from pipelines.world.zeroshot import dense_quality

SPLIT, NEAR = "test", 3


def _labels(world) -> list[np.ndarray]:
    return [np.array(Image.open(p)) for p in sorted((world / "labels" / SPLIT).glob("*.png"))]


def _near_object(label: np.ndarray, near: int) -> np.ndarray:
    """Pixels with an object pixel in their (2 near + 1)^2 window, by brute force over the padded windows."""
    objects = np.pad((label > 0) & (label != 255), near)
    return sliding_window_view(objects, (2 * near + 1, 2 * near + 1)).any(axis=(-1, -2))


class StubTeacher:
    """Plays back one prediction map per image, in the split's order, as one-hot logits."""

    def __init__(self, maps: list[np.ndarray], classes: int = 9):
        self.maps, self.classes, self.next = maps, classes, 0

    def encode_text(self, names, templates):
        assert len(names) == self.classes
        return torch.zeros(len(names), 4)

    def dense_logits(self, images, text, size=None, **refine):
        maps = torch.from_numpy(np.stack(self.maps[self.next : self.next + len(images)]).astype(np.int64))
        self.next += len(images)
        return torch.nn.functional.one_hot(maps, self.classes).permute(0, 3, 1, 2).float()


def _errors(maps, world, near):
    q = dense_quality(StubTeacher(maps), world, SPLIT, near=near, batch=3)
    return {k.removeprefix("background_"): v for k, v in q.items() if k.startswith("background_")}


def test_background_errors_split_near_and_far_as_a_brute_force_count(tiny_world):
    labels = _labels(tiny_world)
    background = [lab == 0 for lab in labels]
    near = [_near_object(lab, NEAR) for lab in labels]
    share = 100 * sum((b & n).sum() for b, n in zip(background, near, strict=True)) / sum(b.sum() for b in background)
    assert 0 < share < 100

    # an object everywhere: every background pixel is wrong, near or far
    everywhere = _errors([np.ones_like(lab) for lab in labels], tiny_world, NEAR)
    assert everywhere == pytest.approx({"near_error": 100.0, "far_error": 100.0, "near_share": share})

    # objects grown by exactly NEAR pixels: wrong on every near background pixel, right on every far one
    grown = [np.where(n, 1, 0) for n in near]
    ring = _errors(grown, tiny_world, NEAR)
    assert ring == pytest.approx({"near_error": 100.0, "far_error": 0.0, "near_share": share})
    # ... which a radius one pixel larger reads as partly right near objects
    wider = _errors(grown, tiny_world, NEAR + 1)
    assert wider["near_error"] < 100.0 and wider["far_error"] == 0.0


def test_dense_miou_of_a_perfect_and_a_background_only_map(tiny_world):
    labels = _labels(tiny_world)
    perfect = dense_quality(StubTeacher([np.where(lab == 255, 0, lab) for lab in labels]), tiny_world, SPLIT, batch=3)
    assert float(perfect["mIoU"]) == pytest.approx(100.0)
    flat = dense_quality(StubTeacher([np.zeros_like(lab) for lab in labels]), tiny_world, SPLIT, batch=3)
    # only the background has a non-zero IoU: |bg| / |pixels not ignored|, one class of those present
    valid = np.concatenate([lab[lab != 255] for lab in labels])
    present = len(np.unique(valid))
    assert float(flat["mIoU"]) == pytest.approx(100 * (valid == 0).mean() / present, rel=1e-5)
    assert float(flat["mIoU_unseen"]) == 0.0
    # pixel recall per class: 100 everywhere for the perfect map; the flat map names only the background right
    assert perfect["pixel_recall"] == pytest.approx({n: 100.0 for n in perfect["pixel_recall"]})
    assert set(perfect["pixel_recall"]) == {("background", *load_spec(tiny_world).classes)[k] for k in np.unique(valid)}
    assert flat["pixel_recall"] == pytest.approx({n: 100.0 if n == "background" else 0.0 for n in flat["pixel_recall"]})


def test_pixel_recall_is_a_brute_force_count_per_class(tiny_world):
    labels = _labels(tiny_world)
    rng = np.random.default_rng(0)
    maps = [np.where(rng.random(lab.shape) < 0.6, np.where(lab == 255, 0, lab), rng.integers(0, 9, lab.shape)) for lab in labels]
    got = dense_quality(StubTeacher(maps), tiny_world, SPLIT, batch=3)["pixel_recall"]
    names = ("background", *load_spec(tiny_world).classes)
    lab, pred = np.concatenate([x.ravel() for x in labels]), np.concatenate([m.ravel() for m in maps])
    want = {names[k]: 100 * (pred[lab == k] == k).mean() for k in np.unique(lab[lab != 255])}
    assert got == pytest.approx(want) and 0 < min(want.values()) < 100


def test_cross_group_shares_are_brute_force_counts(tiny_world):
    """Seen-object pixels named as an unseen class, and unseen-object pixels named as a seen object class (background
    and ignored pixels count in neither group), recounted with numpy over random predictions."""
    labels = _labels(tiny_world)
    rng = np.random.default_rng(1)
    maps = [np.where(rng.random(lab.shape) < 0.5, np.where(lab == 255, 0, lab), rng.integers(0, 9, lab.shape)) for lab in labels]
    got = dense_quality(StubTeacher(maps), tiny_world, SPLIT, batch=3)
    spec = load_spec(tiny_world)
    names = ("background", *spec.classes)
    novel = [names.index(c) for c in spec.novel]
    lab, pred = np.concatenate([x.ravel() for x in labels]), np.concatenate([m.ravel() for m in maps])
    is_unseen, is_seen = np.isin(lab, novel), (lab > 0) & (lab != 255) & ~np.isin(lab, novel)
    want_seen = 100 * np.isin(pred[is_seen], novel).mean()
    named_seen = (pred[is_unseen] > 0) & ~np.isin(pred[is_unseen], novel)
    assert got["seen_named_unseen"] == pytest.approx(want_seen) and 0 < want_seen < 100
    assert got["unseen_named_seen"] == pytest.approx(100 * named_seen.mean()) and 0 < named_seen.mean() < 1


def test_teacher_quality_reads_a_vit_map_at_its_patch_stride(vit_teacher, rn_teacher, tiny_world):
    """``benchmarks/teacher_quality.py`` asks a CNN for output stride 8, which a ViT refuses: its map has only its patch
    stride. The benchmark's dense figures for a ViT teacher are those of its own map, in the asked mode."""
    assert (vit_teacher.fixed_dense_stride(), rn_teacher.fixed_dense_stride()) == (8, None)
    spec = importlib.util.spec_from_file_location("teacher_quality", Path(__file__).parents[1] / "benchmarks" / "teacher_quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    classes = load_spec(tiny_world).classes
    got = {mode: bench.quality(vit_teacher, classes, tiny_world, SPLIT, 0, mode=mode) for mode in ("maskclip", "value_only")}
    for mode, q in got.items():
        want = dense_quality(vit_teacher, tiny_world, SPLIT, size=bench.WORLD_TEACHER_MAP["teacher_size"], mode=mode)
        assert [q[f"dense_{k}"] for k in ("mIoU_seen", "mIoU_unseen")] == pytest.approx([float(want[k]) for k in ("mIoU_seen", "mIoU_unseen")])
    assert got["maskclip"]["dense_hIoU"] != got["value_only"]["dense_hIoU"]  # the mode reaches the map
