"""Each method's formula against an independent computation written from the paper / official code, with inputs
that make a wrong variant fail (L2 for L1, a self-training switch that never fires, NaN logged as 0, ...)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_RN, make_teacher, tiny_segmenter

from distill.det_losses import crop_class_scores, remap_labels, vild_image_loss
from distill.seg_modules import LSeg, MaskCLIPPlus


def test_vild_image_loss_is_l1_summed_over_dims_and_averaged_over_regions():
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    b = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    want = np.mean([np.sum(np.abs(a[i].numpy() - b[i].numpy())) for i in range(5)])
    assert float(vild_image_loss(a, b)) == pytest.approx(want, rel=1e-6)
    assert float(vild_image_loss(a, b)) != pytest.approx(float(((a - b) ** 2).sum(-1).mean()), rel=1e-3)  # not L2
    assert float(vild_image_loss(a[:0], b[:0])) == 0.0
    with pytest.raises(ValueError, match="student regions"):
        vild_image_loss(a, b[:3])


def test_labels_map_to_torchvision_ids_over_the_training_classes():
    names = ["a", "b", "c", "d"]
    got = remap_labels(torch.tensor([2, 0, 2]), [0, 2], names, image_id=9)
    assert got.tolist() == [2, 1, 2]  # a -> 1, c -> 2 (0 is torchvision's background)
    with pytest.raises(ValueError, match=r"image 9: training boxes of classes \['b', 'd'\]"):
        remap_labels(torch.tensor([1, 3]), [0, 2], names, image_id=9)


def test_crop_scores_are_softmax_of_scaled_cosines_times_objectness():
    g = torch.Generator().manual_seed(1)
    emb = F.normalize(torch.randn(3, 6, generator=g), dim=-1)
    text = F.normalize(torch.randn(4, 6, generator=g), dim=-1)
    obj = torch.tensor([1.0, 0.5, 0.1])
    want = np.zeros((3, 4))
    for i in range(3):
        logits = 100 * np.array([float(emb[i] @ text[k]) for k in range(4)])
        e = np.exp(logits - logits.max())
        want[i] = e / e.sum() * float(obj[i])
    np.testing.assert_allclose(crop_class_scores(emb, text, obj).numpy(), want, rtol=1e-5, atol=1e-7)


def test_maskclip_plus_switches_to_self_training_after_the_given_fraction():
    teacher = make_teacher("switch-rn", TINY_RN)
    module = MaskCLIPPlus(teacher, tiny_segmenter(teacher.embed_dim), class_names=["bg", "a", "b"], unseen=["b"], self_train_after=0.1)
    seen = []
    for step in (0, 19, 20, 199):
        module._trainer = SimpleNamespace(estimated_stepping_batches=200, global_step=step)  # what Lightning reads
        seen.append(module.self_training())
    assert seen == [False, False, True, True]  # 10% of 200 steps: from step 20 on


def test_nan_metrics_are_logged_as_nan_not_zero(monkeypatch):
    teacher = make_teacher("nanlog-rn", TINY_RN)
    module = LSeg(teacher, tiny_segmenter(teacher.embed_dim), class_names=["bg", "a", "b"], unseen=["b"])
    logged = {}
    monkeypatch.setattr(module, "log_dict", lambda d, **kw: logged.update(d))
    module.val_metric.update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 1]]]))  # the unseen class never appears
    module._log_metric(module.val_metric, "val")
    assert math.isnan(logged["val/mIoU_unseen"]) and math.isnan(logged["val/hIoU"])
    assert logged["val/mIoU_seen"] == pytest.approx(100.0)
