"""Kill and resume: a run SIGKILLed mid-epoch and resumed from ``last.ckpt`` ends with the weights and test
metrics of the uninterrupted run (one segmentation method, one detection method, ``pretrain-teacher``). The two
methods train with decaying learning rates (poly, step), so the scheduler's position must survive the kill too.

Each run is a real ``ovdistill`` process. The kill lands one step after a checkpoint, so that step is lost and
redone, and the resumed run crosses an epoch boundary."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from pipelines.cli import lightning_cli

ROOT = Path(__file__).resolve().parents[1]
STEPS, EVERY, KILL = 12, 2, 5  # tiny world: 16 train images, batch 2 -> 8 batches an epoch; resume at step 4
METHODS = {
    "seg": ["-c", "configs/seg/world.yaml", "-c", "configs/seg/method/maskclip_plus.yaml",
            "--model.init_args.student.init_args.encoder_weights", "null", "--model.init_args.lr_schedule", "poly"],
    "det": ["-c", "configs/det/world.yaml", "-c", "configs/det/method/vild_text.yaml",
            "--model.init_args.student.init_args.weights", "null", "--model.init_args.lr_schedule", "step"],
}


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=cwd, env=_env(), capture_output=True, text=True, check=False)


def _config(path: Path, ckpt_dir: Path, world: Path, kill: bool) -> Path:
    callbacks = [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                  "init_args": {"dirpath": str(ckpt_dir), "save_last": True, "every_n_train_steps": EVERY}}]
    if kill:
        callbacks.append({"class_path": "kill_at.KillAtStep", "init_args": {"step": KILL}})
    cfg = {"trainer": {"max_steps": STEPS, "logger": False, "enable_progress_bar": False, "default_root_dir": str(path.parent),
                       "callbacks": callbacks},
           "data": {"init_args": {"world": str(world), "batch_size": 2}}}
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def _test_metrics(base: list[str], cfg: Path, ckpt: Path) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = lightning_cli([*base, "-c", str(cfg), "--trainer.callbacks", "[]"], run=False)
        return cli.trainer.test(cli.model, cli.datamodule, ckpt_path=str(ckpt), verbose=False)[0]


def _weights(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(METHODS))
def test_a_killed_fit_resumes_to_the_uninterrupted_result(task, tiny_world, tmp_path):
    base = METHODS[task]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    for d in (whole, broken):
        d.mkdir()
    cfg_whole = _config(whole / "run.yaml", whole / "ckpt", tiny_world, kill=False)
    r = _run(["fit", *base, "-c", str(cfg_whole)], ROOT)
    assert r.returncode == 0, r.stderr[-3000:]

    r = _run(["fit", *base, "-c", str(_config(broken / "kill.yaml", broken / "ckpt", tiny_world, kill=True))], ROOT)
    assert r.returncode == -9, f"the run was meant to die by SIGKILL at step {KILL}: rc {r.returncode}\n{r.stderr[-2000:]}"
    left = torch.load(broken / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert left["global_step"] == KILL - 1 and left["epoch"] == 0  # mid-epoch: step KILL is lost with the process

    cfg_resume = _config(broken / "run.yaml", broken / "ckpt", tiny_world, kill=False)
    r = _run(["fit", *base, "-c", str(cfg_resume), "--ckpt_path", "last"], ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = torch.load(broken / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["global_step"] == STEPS

    a, b = _weights(whole / "ckpt" / "last.ckpt"), _weights(broken / "ckpt" / "last.ckpt")
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ after resume, e.g. {differ[:3]}"
    m_whole = _test_metrics(base, cfg_whole, whole / "ckpt" / "last.ckpt")
    m_resumed = _test_metrics(base, cfg_resume, broken / "ckpt" / "last.ckpt")
    assert m_whole.keys() == m_resumed.keys()
    assert all(m_whole[k] == m_resumed[k] or (math.isnan(m_whole[k]) and math.isnan(m_resumed[k])) for k in m_whole), (m_whole, m_resumed)
    print(f"\n{task}: uninterrupted {m_whole}\n{task}: killed at step {KILL} + resumed {m_resumed}")


@pytest.mark.slow
def test_a_killed_pretrain_teacher_resumes_to_the_uninterrupted_teacher(tmp_path):
    recipe = ["--steps", "10", "--batch-size", "16", "--ckpt-every", "2", "--fp32"]  # 3 curriculum steps, then 7
    r = _run(["pretrain-teacher", "--out", str(tmp_path / "whole"), *recipe], ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    kill = (
        "from kill_at import KillAtStep; from pipelines.world.pretrain_run import pretrain_teacher; "
        f"pretrain_teacher({str(tmp_path / 'broken')!r}, steps=10, batch_size=16, half=False, ckpt_every=2, progress=False, "
        "callbacks=[KillAtStep(6)])"
    )
    r = subprocess.run([sys.executable, "-c", kill], cwd=ROOT, env=_env(), capture_output=True, text=True, check=False)
    assert r.returncode == -9, r.stderr[-2000:]
    left = torch.load(tmp_path / "broken" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (left["global_step"], left["epoch"]) == (4, 1)  # mid-way through the caption epoch
    # the command resumes from OUT/checkpoints/last.ckpt by itself
    r = _run(["pretrain-teacher", "--out", str(tmp_path / "broken"), *recipe], ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    a = torch.load(tmp_path / "whole" / "teacher.pt", weights_only=True)
    b = torch.load(tmp_path / "broken" / "teacher.pt", weights_only=True)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    acc = [json.loads((tmp_path / d / "teacher.json").read_text())["zero_shot_crop_accuracy"] for d in ("whole", "broken")]
    assert acc[0] == acc[1]
