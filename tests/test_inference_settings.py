"""Scoring inference-only settings from one student pass per batch (``pipelines.bench.inference_settings``, used by the
dense val question): each setting scores as its own ``Trainer.validate`` run would."""
from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import TINY_RN, make_teacher, tiny_segmenter

from distill.seg_modules import LSegDenseDistill, MaskCLIP
from pipelines.bench.inference_settings import _replayed, score_inference_settings
from pipelines.data.seg_datamodule import WorldSegDataModule

KEYS = ("mIoU", "mIoU_seen", "mIoU_unseen", "hIoU")


def test_every_setting_scores_as_its_own_validate_run_from_one_student_pass(tiny_world):
    teacher = make_teacher("ens-rn", TINY_RN)
    dm = WorldSegDataModule(str(tiny_world), batch_size=4, eval_batch_size=3)
    module = LSegDenseDistill(teacher, tiny_segmenter(teacher.embed_dim, image_head=True), ensemble=True, teacher_stride=8,
                              ensemble_lambda=0.85, calibration=-0.2)
    settings = [{"ensemble_lambda": lam, "calibration": gamma} for lam in (2 / 3, 1.0) for gamma in (0.0, -2.0, 2.0)]
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    want = []
    for setting in settings:
        module.hparams.update(setting)
        want.append(trainer.validate(module, dm, verbose=False)[0])
    module.hparams.update(ensemble_lambda=0.85, calibration=-0.2)

    calls = []
    hook = module.student.distill_head.register_forward_hook(lambda m, a, out: calls.append(out.shape[0]))
    got = score_inference_settings(module, dm.val_dataloader(), settings)
    hook.remove()
    for g, w, setting in zip(got, want, settings, strict=True):
        for key in KEYS:
            assert g[key] == pytest.approx(w[f"val/{key}"], abs=1e-6), (setting, key)
    # the settings matter on this student (the check could fail), yet the student ran once per val batch
    assert len({round(g["mIoU"], 6) for g in got}) > 1
    assert calls == [len(b["image"]) for b in dm.val_dataloader()]
    assert (module.hparams.ensemble_lambda, module.hparams.calibration) == (0.85, -0.2)
    with pytest.raises(KeyError, match="no hparams"):
        score_inference_settings(module, [], [{"not_a_setting": 1}])


def test_a_replay_refuses_another_batch():
    student = tiny_segmenter(8)
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad(), _replayed(student):
        first = student(a)
        assert student(a.clone()) is first  # the same batch is replayed, not recomputed
        with pytest.raises(RuntimeError, match="another input"):
            student(b)
    assert "forward" not in vars(student)  # the class's own forward again
    assert not torch.equal(student(b), first)


def test_training_free_maskclip_settings_score_from_one_teacher_pass(tiny_world, monkeypatch):
    """No student: the teacher's dense map is replayed, and each background rule scores as its own validate run."""
    teacher = make_teacher("bg-rn", TINY_RN)
    dm = WorldSegDataModule(str(tiny_world), batch_size=4, eval_batch_size=3)
    module = MaskCLIP(teacher, teacher_size=(64, 64), teacher_stride=8)
    settings = [{"logit_scale": s, "background_threshold": t} for s, t in ((1 / 0.07, 0.0), (2.5, 0.2), (5.0, 0.3), (10.0, 0.6))]
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    want = []
    for setting in settings:
        module.hparams.update(setting)
        want.append(trainer.validate(module, dm, verbose=False)[0])
    module.hparams.update(logit_scale=1 / 0.07, background_threshold=0.0)

    calls, dense_logits = [], type(teacher).dense_logits
    monkeypatch.setattr(type(teacher), "dense_logits", lambda self, *a, **k: calls.append(1) or dense_logits(self, *a, **k))
    got = score_inference_settings(module, dm.val_dataloader(), settings)
    for g, w, setting in zip(got, want, settings, strict=True):
        for key in KEYS:
            assert g[key] == pytest.approx(w[f"val/{key}"], abs=1e-6), (setting, key)
    assert len({round(g["mIoU"], 6) for g in got}) > 1
    assert len(calls) == len(dm.val_dataloader())  # the teacher's map once per val batch, not once per setting
