"""``ovdistill demo --quick`` end to end, as the README has a user run it: the installed ``ovdistill``
command, a fresh working directory, the default (relative) output directory, a cold cache."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_quick_runs_every_stage(tmp_path):
    env = {**os.environ, "OVDISTILL_CACHE": str(tmp_path / "cache")}
    exe = shutil.which("ovdistill") or str(Path(sys.executable).parent / "ovdistill")
    assert Path(exe).is_file(), "the `ovdistill` console script is not installed (pip install -e .)"
    proc = subprocess.run([exe, "demo", "--quick"], capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    out = tmp_path / "ovdistill-demo"  # the README's default output directory, relative to the cwd
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ("[world]", "[teacher] pre-training stage checked", "[teacher] shipped", "[segmentation]", "[detection]"):
        assert stage in proc.stdout, stage
    results = json.loads((out / "results.json").read_text())
    # the teacher's passes run at the precision the auto rule names here; the students' trunk is the fp32 teacher's
    import torch

    from pipelines.bench.teacher_precision import teacher_precision
    from pipelines.world.teacher import load_shipped_teacher, save_trunk_weights

    precision = teacher_precision("auto")[0]
    assert results["meta"]["teacher_precision"] == precision and f"[teacher] inference in {precision}" in proc.stdout
    shipped = torch.load(save_trunk_weights(load_shipped_teacher()[0], tmp_path / "fp32_trunk.pt", "timm"), weights_only=True)
    used = torch.load(out / "init" / "trunk_timm.pt", weights_only=True)
    assert used.keys() == shipped.keys() and all(torch.equal(used[k], shipped[k]) for k in shipped)
    seg = next(rows for title, rows in results["sections"].items() if title.startswith("Segmentation"))
    methods = [r["method"] for r in seg]
    assert methods[0].startswith("MaskCLIP (") and methods[1].startswith("MaskCLIP + PAMR") and len(methods) == 5
    assert any("MaskCLIP+" in m for m in methods)
    for row in seg:
        assert 0.0 <= row["mIoU_seen"] <= 100.0 and not math.isnan(row["mIoU_seen"])
    det = next(rows for title, rows in results["sections"].items() if title.startswith("Detection"))
    assert [r["method"].split(" (")[0] for r in det] == [
        "teacher on proposals", "base-only detector", "ViLD-text", "ViLD", "ViLD-ensemble", "pseudo-box self-training"
    ]
    for row in det:
        assert 0.0 <= row["AP50"] <= 100.0 and not math.isnan(row["AP50"])
    assert next(r for r in det if r["method"].startswith("base-only"))["AP50_novel"] == 0.0
    pseudo = json.loads((out / "detection" / "pseudo_labels_train.json").read_text())
    assert {c["name"] for c in pseudo["categories"]} == {"star", "heart", "ring"}
    assert "| method |" in (out / "results.md").read_text()
    sheets = sorted(p.name for p in (out / "overlays").glob("*.png"))
    assert len(sheets) == 6 and "all methods.png" in sheets, sheets  # one per method + the comparison
    assert (tmp_path / "cache").is_dir()
    # the dense methods read the world's teacher cache: one per teacher map they use (dense distillation distils its own)
    from pipelines.bench.segmentation import SEG_METHODS, WORLD_TEACHER_MAP

    maps = {tuple(extra.get("teacher_size", WORLD_TEACHER_MAP["teacher_size"]))
            for _, cls, extra, _ in SEG_METHODS if cls.uses_dense_teacher}
    keys = [json.loads(p.read_text())["key"] for p in (tmp_path / "cache").glob("teacher-dense-*/index.json")]
    assert sorted(tuple(k["size"]) for k in keys) == sorted(maps) and len(maps) == 2, keys
    runs = {p.parent.name for p in (out / "tensorboard").rglob("events.out.tfevents.*")}
    assert len(runs) == 8 and any(r.startswith("seg_MaskCLIP") for r in runs), runs  # one TensorBoard run per trained method
    # a re-run with the same settings reuses the finished sections instead of training again
    table, finished = (out / "results.md").read_text().split("Finished in ")
    assert " min " in finished and "CPU cores" in finished and "torch threads" in finished
    again = subprocess.run([exe, "demo", "--quick"], capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("reusing the finished section") == 2
    assert (out / "results.md").read_text().split("Finished in ")[0] == table
