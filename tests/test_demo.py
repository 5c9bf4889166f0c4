"""``ovdistill demo --quick`` end to end, as a user runs it (a fresh process)."""
from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_quick_runs_end_to_end(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "demo", "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "encode_regions" in proc.stdout
