"""Resumable loading, checked against independent computations: the training order is torch's
``DistributedSampler`` order for ``(seed, epoch)`` minus the consumed batches, augmentation depends on
``(seed, epoch, index)`` only, and two identical fits give identical weights (CPU determinism)."""
from __future__ import annotations

import random
import warnings

import lightning as L
import pytest
import torch
from conftest import TINY_RN, make_teacher
from torch.utils.data import DistributedSampler

from distill.det_modules import ViLD
from pipelines.data.det_datamodule import WorldDetDataModule
from pipelines.data.loaders import ResumableSampler
from pipelines.data.seg_datamodule import WorldSegDataModule
from students import RegionEmbeddingDetector


class _Trainer:
    current_epoch = 1


def _reference(n: int, seed: int, epoch: int, replicas: int = 1, rank: int = 0) -> list[int]:
    s = DistributedSampler(range(n), num_replicas=replicas, rank=rank, shuffle=True, seed=seed)
    s.set_epoch(epoch)
    return list(s)


def test_resumed_sampler_skips_exactly_the_consumed_batches_of_its_epoch():
    data = range(23)
    for replicas in (1, 2):
        for rank in range(replicas):
            ref = _reference(23, 7, 1, replicas, rank)
            s = ResumableSampler(data, 3, 7, replicas, rank, resume={"epoch": 1, "batches": 2}, trainer=_Trainer())
            assert list(s) == ref[6:]
            assert list(s) == ref[6:]  # a second iterator of the same epoch is partial too
            _Trainer.current_epoch = 2
            assert list(s) == _reference(23, 7, 2, replicas, rank)  # the next epoch is whole
            _Trainer.current_epoch = 1
    # a position recorded in another epoch does not apply; keys carry the epoch for augmentation
    s = ResumableSampler(data, 3, 7, resume={"epoch": 0, "batches": 5}, with_epoch=True, trainer=_Trainer())
    assert list(s) == [(i, 1) for i in _reference(23, 7, 1)]


def test_a_resume_on_another_number_of_devices_is_refused():
    with pytest.raises(ValueError, match="2 device"):
        ResumableSampler(range(10), 2, 0, num_replicas=1, resume={"epoch": 0, "batches": 1, "world_size": 2})


def test_augmentation_depends_on_seed_epoch_and_index_only(tiny_world):
    dm = WorldSegDataModule(str(tiny_world), batch_size=2, crop_size=48, scale_range=(0.5, 1.5))
    ds = dm._train_dataset()
    torch.manual_seed(0)
    random.seed(0)
    a = ds[(3, 1)]
    torch.manual_seed(123)  # the global RNGs have no say
    random.seed(123)
    ds[(5, 1)]
    b = ds[(3, 1)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    other_epoch = [ds[(i, 2)]["image"] for i in range(4)]
    assert any(not torch.equal(ds[(i, 1)]["image"], x) for i, x in enumerate(other_epoch))
    # the flip of a detection image likewise
    det = WorldDetDataModule(str(tiny_world), batch_size=2)._train_dataset()
    flips = [torch.equal(det[(i, 0)][0], det[i][0]) for i in range(len(det))]
    assert all(flips), "an index without an epoch is epoch 0"
    assert any(not torch.equal(det[(i, 0)][0], det[(i, 1)][0]) for i in range(len(det)))


def test_datamodule_records_a_position_only_while_fitting(tiny_world):
    dm = WorldSegDataModule(str(tiny_world), batch_size=2)
    assert dm.state_dict() == {}
    dm.load_state_dict({"train_position": {"epoch": 0, "batches": 3}})
    loader = dm.train_dataloader()
    assert len(list(loader)) == len(dm.dataset("train")) // 2 - 3
    assert len(list(dm.train_dataloader())) == len(dm.dataset("train")) // 2  # a position is used once


def _fit_twice_weights(tiny_world, tmp_path):
    out = []
    for run in range(2):
        L.seed_everything(0, verbose=False)
        teacher = make_teacher("det-rn", TINY_RN)
        student = RegionEmbeddingDetector(teacher.embed_dim, backbone="timm:resnet10t", min_size=64, max_size=64, fpn_channels=16,
                                          representation_size=32)
        module = ViLD(teacher, student, lr=1e-3)
        trainer = L.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                            limit_val_batches=0, enable_model_summary=False, default_root_dir=tmp_path / str(run))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(module, WorldDetDataModule(str(tiny_world), batch_size=4, num_workers=0))
        out.append({k: v.clone() for k, v in module.student.state_dict().items()})
    return out


def test_the_same_detection_fit_twice_gives_identical_weights(tiny_world, tmp_path):
    a, b = _fit_twice_weights(tiny_world, tmp_path)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
