"""``benchmarks/teacher_choice.py``'s parts: a teacher judged at its own dense-distillation setting trains that
setting, and a stored part is reused only under the settings it was computed with."""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipelines.bench.segmentation import SEG_METHODS

BENCH = Path(__file__).parents[1] / "benchmarks"


@pytest.fixture()
def choice(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the script imports its siblings (bench_common, seed_spread)
    spec = importlib.util.spec_from_file_location("teacher_choice", BENCH / "teacher_choice.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dense_row(methods):
    (row,) = [m for m in methods if m[0].startswith("LSeg + dense")]
    return row


def test_own_dense_setting_reaches_the_dense_row_only(choice):
    _, setting = choice.dense_setting('max8={"distill_weight": 2, "ensemble_lambda": 1, "calibration": 0, "teacher_size": [128, 128]}')
    own = choice.seg_methods(setting, full=True)
    _, cls, extra, student = _dense_row(own)
    _, default_cls, default_extra, default_student = _dense_row(SEG_METHODS)
    assert cls is default_cls and student == default_student == {"image_head": True}
    assert extra == {**default_extra, "distill_weight": 2, "ensemble_lambda": 1, "calibration": 0, "teacher_size": (128, 128)}
    assert extra != default_extra
    assert [m for m in own if m[0] != _dense_row(own)[0]] == [m for m in SEG_METHODS if m[0] != _dense_row(SEG_METHODS)[0]]
    assert choice.seg_methods({}, full=True) == SEG_METHODS
    assert [m[0] for m in choice.seg_methods(setting, full=False)] == [m[0] for m in SEG_METHODS if m[0].startswith("MaskCLIP+")]
    # a one-head setting trains a student without the second head
    assert _dense_row(choice.seg_methods({"ensemble": False}, full=True))[3] == {"image_head": False}


def test_parts_are_keyed_by_what_they_were_computed_with(choice):
    teacher = SimpleNamespace(name="a-teacher@file-0123")
    default = choice.seg_settings(teacher, choice.seg_methods({}, full=True))
    own = choice.seg_settings(teacher, choice.seg_methods({"calibration": -0.25}, full=True))
    other_teacher = choice.seg_settings(SimpleNamespace(name="b@file-4567"), choice.seg_methods({}, full=True))
    assert len({str(default), str(own), str(other_teacher)}) == 3
    det = choice.det_settings(teacher)
    assert "methods" not in det and det["teacher"] == teacher.name  # a segmentation setting does not retrain detection
    assert choice.det_settings(SimpleNamespace(name="b@file-4567")) != det


@pytest.mark.parametrize("text", ["max8", "max8={not json}", "max8=[1, 2]"])
def test_a_malformed_dense_setting_is_refused_with_the_value(choice, text):
    with pytest.raises(argparse.ArgumentTypeError, match="--dense"):
        choice.dense_setting(text)
