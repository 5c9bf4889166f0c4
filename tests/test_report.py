"""Results files and the README splice: what the demo writes is what the README shows."""
from __future__ import annotations

import pytest

from pipelines.bench.report import BEGIN, END, finished_section, save_section, splice_results, write_results


def test_results_md_carries_tables_command_and_wall_time(tmp_path):
    rows = [{"method": "a", "mIoU": 12.345}, {"method": "b", "mIoU": float("nan")}]
    md = write_results(tmp_path, {"Seg": (rows, ["method", "mIoU"])}, {"command": "ovdistill demo", "wall_s": 754.4, "machine": "2 CPU cores"})
    assert "| a | 12.3 |" in md and "| b | n/a |" in md and "Finished in 12 min 34 s on 2 CPU cores." in md
    assert (tmp_path / "results.md").read_text() == md


def test_splice_replaces_only_the_marked_block(tmp_path):
    md = write_results(tmp_path, {"Seg": ([{"method": "a", "mIoU": 1.0}], ["method", "mIoU"])}, {"command": "ovdistill demo"})
    readme = f"# title\n\nintro\n{BEGIN}\nold table\n{END}\n\ndiscussion\n"
    out = splice_results(readme, md)
    assert out.startswith("# title\n\nintro\n" + BEGIN + "\n### Seg\n") and out.endswith(END + "\n\ndiscussion\n")
    assert "old table" not in out and "# ovdistill results" not in out and "| a | 1.0 |" in out
    assert splice_results(out, md) == out  # idempotent
    with pytest.raises(ValueError, match="exactly one"):
        splice_results("no markers", md)


def test_a_finished_section_is_reused_only_with_the_same_settings_tuples_included(tmp_path):
    """The demo reuses a section recorded with equal settings; a tuple (a teacher size) is stored as a JSON list and
    must still match, and any changed value must not."""
    settings = {"steps": 100, "methods": [["LSeg + dense distillation", {"teacher_size": (112, 112), "calibration": -0.3}]]}
    rows = [{"method": "m", "mIoU": 1.0}]
    save_section(tmp_path, "segmentation", settings, rows)
    assert finished_section(tmp_path, "segmentation", settings) == rows
    changed = {"steps": 100, "methods": [["LSeg + dense distillation", {"teacher_size": (96, 96), "calibration": -0.3}]]}
    assert finished_section(tmp_path, "segmentation", changed) is None
    assert finished_section(tmp_path, "detection", settings) is None
