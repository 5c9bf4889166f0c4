"""Training-free MaskCLIP's background threshold (SCLIP's ``prob_thd``): a pixel whose top class probability,
``softmax(logit_scale * score)``, is under the threshold is named background — checked against a numpy recount of the
rule and of the mIoU on a tiny world, and refused where no background class exists."""
from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from real_formats import write_context

from distill.seg_modules import MaskCLIP
from pipelines.data.seg_datamodule import SegFolderDataModule, WorldSegDataModule


def _trainer() -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)


def _numpy_rule(logits: np.ndarray, scale: float, threshold: float, background: int) -> np.ndarray:
    z = scale * logits.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    pred = logits.argmax(1)
    pred[p.max(1) < threshold] = background
    return pred


def _miou(preds, labels, k: int, unseen: list[int]) -> tuple[float, float]:
    inter, union = np.zeros(k), np.zeros(k)
    for pred, label in zip(preds, labels, strict=True):
        keep = label != 255
        for c in range(k):
            p, t = (pred == c) & keep, label == c
            inter[c] += (p & t).sum()
            union[c] += (p | t).sum()
    iou = np.where(union > 0, inter / np.maximum(union, 1) * 100, np.nan)
    is_unseen = np.isin(np.arange(k), unseen)
    return float(np.nanmean(iou[~is_unseen])), float(np.nanmean(iou[is_unseen]))


def test_the_threshold_names_low_confidence_pixels_background_as_a_recount_does(rn_teacher, tiny_world):
    dm = WorldSegDataModule(str(tiny_world), batch_size=4)
    plain = MaskCLIP(rn_teacher, teacher_size=(64, 64), teacher_stride=8)
    got_plain = _trainer().validate(plain, dm, verbose=False)[0]
    plain.eval()
    val = dm.dataset("val")
    with torch.no_grad():
        logits = [plain.predict_logits(val[i]["image"][None])[0].numpy() for i in range(len(val))]
    labels = [val[i]["label"].numpy() for i in range(len(val))]
    confidence = np.concatenate([(lambda z: (np.exp(z - z.max(0)) / np.exp(z - z.max(0)).sum(0)).max(0).ravel())(10.0 * x)
                                 for x in logits])
    threshold = float(np.quantile(confidence, 0.4))  # moves about 40 % of the pixels: the rule must show
    module = MaskCLIP(rn_teacher, teacher_size=(64, 64), teacher_stride=8, background_threshold=threshold, logit_scale=10.0)
    got = _trainer().validate(module, dm, verbose=False)[0]
    bg, k, unseen = module.background_index, len(module.class_names), module.unseen_ids
    want = [_numpy_rule(x[None], 10.0, threshold, bg)[0] for x in logits]
    seen, unseen_miou = _miou(want, labels, k, unseen)
    assert got["val/mIoU_seen"] == pytest.approx(seen, abs=1e-3)
    assert got["val/mIoU_unseen"] == pytest.approx(unseen_miou, abs=1e-3)
    moved = sum(int((w != x.argmax(0)).sum()) for w, x in zip(want, logits, strict=True))
    assert moved > 0.2 * sum(w.size for w in want), "the threshold should move a good share of the pixels"
    assert got["val/mIoU_seen"] != pytest.approx(got_plain["val/mIoU_seen"], abs=1e-3)
    # the predict path (ovdistill predict, the demo's overlays) gives the same labels
    module.eval()
    batch = {"image": val[0]["image"][None], "label": val[0]["label"][None]}
    with torch.no_grad():
        np.testing.assert_array_equal(module.predict_step(batch, 0)[0].numpy(), want[0])


def test_no_threshold_is_the_plain_arg_max(rn_teacher):
    module = MaskCLIP(rn_teacher, class_names=["background", "cat", "dog"], unseen=["dog"])
    module.setup("test")
    logits = torch.randn(2, len(module.class_names), 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(module.labels_from_logits(logits), logits.argmax(1))


def test_a_threshold_without_a_background_class_or_out_of_range_is_refused(rn_teacher):
    module = MaskCLIP(rn_teacher, class_names=["cat", "dog", "sheep"], unseen=["sheep"], background_threshold=0.3)
    with pytest.raises(ValueError, match=r"background_threshold=0.3 .*'background', which is not among this dataset's classes"):
        module.setup("test")
    with pytest.raises(ValueError, match=r"background_threshold=1.0: a probability in \[0, 1\)"):
        MaskCLIP(rn_teacher, class_names=["background", "cat"], unseen=["cat"], background_threshold=1.0)



def _on(teacher, dm, **kw) -> MaskCLIP:
    """MaskCLIP with a data module's vocabulary, set up as a Trainer would."""
    module = MaskCLIP(teacher, class_names=list(dm.vocabulary.names), unseen=list(dm.vocabulary.held_out), teacher_size=(64, 64), **kw)
    module.setup("validate")
    return module.eval()


def test_on_context_files_context60_takes_the_rule_and_context59_refuses_it(rn_teacher, tmp_path):
    """PASCAL Context in its real layout: context60 keeps background (index 0) as a class, context59 ignores it."""
    ctx = write_context(tmp_path)
    splits = {"train": ["JPEGImages", "SegmentationClassContext", "ImageSets/SegmentationContext/train.txt"],
              "val": ["JPEGImages", "SegmentationClassContext", "ImageSets/SegmentationContext/val.txt"]}
    c60 = SegFolderDataModule(str(ctx), preset="context60", splits=splits, num_workers=0)
    plain = _on(rn_teacher, c60)
    with torch.no_grad():
        logits = plain.predict_logits(c60.dataset("val")[0]["image"][None])
    top = (plain.hparams.logit_scale * logits).softmax(1).amax(1)
    threshold = float(top.median())
    rule = _on(rn_teacher, c60, background_threshold=threshold)
    got = rule.labels_from_logits(logits)
    assert rule.background_index == 0 and rule.class_names[0] == "background"
    torch.testing.assert_close(got, torch.where(top < threshold, torch.zeros_like(got), logits.argmax(1)))
    assert (got == 0).float().mean() >= 0.4
    c59 = SegFolderDataModule(str(ctx), preset="context59", splits=splits, num_workers=0)
    with pytest.raises(ValueError, match="not among this dataset's classes"):
        _on(rn_teacher, c59, background_threshold=0.3)
