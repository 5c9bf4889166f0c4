"""The demo's side-by-side trainings: each equals the same job trained alone in one process on one thread."""
from __future__ import annotations

import warnings

import pytest
import torch
from conftest import tiny_segmenter

from distill.seg_modules import LSeg
from pipelines.bench.fit_side_by_side import (
    FitJob,
    fit_one,
    fit_side_by_side,
    trained_state,
)
from pipelines.data.seg_datamodule import WorldSegDataModule


def _jobs(teacher, world) -> list[FitJob]:
    dm = WorldSegDataModule(str(world), batch_size=4)
    # two jobs that differ (learning rate, student seed), so a mix-up of their states shows
    return [FitJob(f"lseg-{seed}", lambda seed=seed: LSeg(teacher, tiny_segmenter(teacher.embed_dim, seed), lr=1e-3 * (seed + 1)), dm)
            for seed in (0, 1)]


def _alone(job: FitJob, threads: int) -> dict:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return trained_state(fit_one(job, steps=3, seed=0, progress=False, log_dir=None))
    finally:
        torch.set_num_threads(before)


def test_side_by_side_trainings_equal_each_job_trained_alone(vit_teacher, tiny_world):
    if torch.get_num_threads() < 2:
        pytest.skip("needs two torch threads to share between two processes")
    jobs = _jobs(vit_teacher, tiny_world)
    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trained = fit_side_by_side(jobs, steps=3, seed=0, workers=2, progress=False, report=lines.append)
        alone = {job.name: _alone(job, 1) for job in jobs}
        untrained = trained_state(jobs[0].build())
    assert list(trained) == [job.name for job in jobs]
    assert any("2 side by side" in line for line in lines), lines
    for name, module in trained.items():
        state = trained_state(module)
        assert state.keys() == alone[name].keys()
        for key, value in alone[name].items():
            assert torch.equal(state[key], value), (name, key)
    # the states are trained ones, and each job's own
    moved = [k for k, v in untrained.items() if v.is_floating_point() and not torch.equal(v, trained["lseg-0"].state_dict()[k])]
    assert moved
    assert any(not torch.equal(trained["lseg-0"].state_dict()[k], trained["lseg-1"].state_dict()[k]) for k in moved)


def test_a_failing_side_by_side_training_names_the_job_and_its_error(vit_teacher, tiny_world):
    if torch.get_num_threads() < 2:
        pytest.skip("needs two torch threads to share between two processes")
    dm = WorldSegDataModule(str(tiny_world), batch_size=4)

    def broken():
        raise ValueError("no such student: resnet-999")

    jobs = [FitJob("fine", lambda: LSeg(vit_teacher, tiny_segmenter(vit_teacher.embed_dim)), dm), FitJob("broken one", broken, dm)]
    with warnings.catch_warnings(), pytest.raises(RuntimeError, match=r"(?s)'broken one'.*no such student: resnet-999"):
        warnings.simplefilter("ignore")
        fit_side_by_side(jobs, steps=2, seed=0, workers=2, progress=False, report=lambda line: None)
