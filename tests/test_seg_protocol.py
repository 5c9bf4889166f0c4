"""The official segmentation test protocol on real-layout files: mmseg's keep-ratio ``img_scale`` (training's base
scale, evaluation's resize with labels at their original size), MaskCLIP's teacher at the resized image's own size."""
from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_VIT, make_teacher, tiny_segmenter
from real_formats import write_voc

from distill.seg_modules import LSeg, MaskCLIP
from distill.teacher_key import dense_cache_key
from pipelines.data.seg_datamodule import SegFolderDataModule, SegTrainTransform, keep_ratio_size

VOC_SPLITS = {"train": ["JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation/train_aug.txt"],
              "val": ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation/val.txt"]}


@pytest.mark.parametrize(("hw", "img_scale", "want"), [
    ((375, 500), (2048, 512), (512, 683)),   # a VOC image: short side to 512
    ((100, 1000), (2048, 512), (205, 2048)),  # a panorama: the long side binds
    ((375, 500), (520, 520), (390, 520)),    # Context's square scale: the long side to 520
    ((600, 800), (512, 2048), (512, 683)),   # the order of img_scale does not matter (mmcv takes max / min)
])
def test_keep_ratio_size_is_mmcvs_rescale(hw, img_scale, want):
    assert keep_ratio_size(*hw, img_scale) == want


def _voc_dm(tmp_path, **kw):
    return SegFolderDataModule(str(write_voc(tmp_path, size=(40, 56))), preset="voc20", splits=VOC_SPLITS, num_workers=0, **kw)


def test_evaluation_resizes_images_and_keeps_labels_at_their_original_size(tmp_path):
    dm = _voc_dm(tmp_path, img_scale=(2048, 64))
    plain, view = dm.dataset("val")[0], next(iter(dm.val_dataloader()))
    assert view["image"].shape[-2:] == (64, 90)  # 40 x 56 -> short side 64
    torch.testing.assert_close(view["image"][0], F.interpolate(plain["image"][None], size=(64, 90), mode="bilinear",
                                                               align_corners=False)[0].clamp(0, 1))
    assert torch.equal(view["label"][0], plain["label"])
    with pytest.raises(ValueError, match=r"data.img_scale=\[2048, 64\].*eval_batch_size to 1 \(got 2\)"):
        _voc_dm(tmp_path / "b", img_scale=(2048, 64), eval_batch_size=2)


def test_training_scale_is_the_keep_ratio_factor_times_the_random_ratio(tmp_path):
    base = _voc_dm(tmp_path).dataset("train")
    h, w = base[0]["image"].shape[-2:]
    item = SegTrainTransform(base, crop_size=128, scale_range=(1.0, 1.0), flip=False, img_scale=(2048, 64))[0]
    # a crop larger than the rescaled image: the image sits at the top-left, the rest is padding (label ignore)
    rows, cols = (item["image"].abs().sum(0) > 0).nonzero().max(0).values.tolist()
    assert (rows + 1, cols + 1) == keep_ratio_size(h, w, (2048, 64)) == (64, 90)
    assert (item["label"][64:] == 255).all() and (item["label"][:, 90:] == 255).all()


def test_metrics_are_computed_at_the_label_size_from_resized_logits(tmp_path):
    teacher = make_teacher("protocol-vit", TINY_VIT)
    dm = _voc_dm(tmp_path, img_scale=(2048, 64))
    module = LSeg(teacher, tiny_segmenter(teacher.embed_dim))
    got = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False).validate(module, dm, verbose=False)[0]
    module.eval()  # validate hands the module back in training mode
    # independently: predict at the resized size, resize the logits to the label (bilinear), count IoU by hand
    inter, union = np.zeros(20), np.zeros(20)
    for i in range(len(dm.dataset("val"))):
        item = dm.dataset("val")[i]
        size = keep_ratio_size(*item["image"].shape[-2:], (2048, 64))
        image = F.interpolate(item["image"][None], size=size, mode="bilinear", align_corners=False).clamp(0, 1)
        with torch.no_grad():
            logits = F.interpolate(module.predict_logits(image), size=item["label"].shape, mode="bilinear", align_corners=False)
        pred, label = logits.argmax(1)[0].numpy(), item["label"].numpy()
        keep = label != 255
        for k in range(20):
            p, t = (pred == k) & keep, label == k
            inter[k] += (p & t).sum()
            union[k] += (p | t).sum()
    iou = np.where(union > 0, inter / np.maximum(union, 1) * 100, np.nan)
    unseen = np.array([module.class_names[k] in module.unseen_names for k in range(20)])
    assert got["val/mIoU_seen"] == pytest.approx(np.nanmean(iou[~unseen]), abs=1e-4)
    assert got["val/mIoU_unseen"] == pytest.approx(np.nanmean(iou[unseen]), abs=1e-4)


def test_maskclip_runs_the_teacher_at_the_images_own_size_when_asked():
    teacher = make_teacher("protocol-vit", TINY_VIT)
    names = ["cat", "dog", "sheep"]
    module = MaskCLIP(teacher, class_names=names, unseen=["sheep"], teacher_size="input")
    module.setup("test")
    images = torch.rand(1, 3, 48, 80, generator=torch.Generator().manual_seed(0))
    want = teacher.dense_logits(images, module.text, size=(48, 80))
    torch.testing.assert_close(module.predict_logits(images), want)
    squashed = teacher.dense_logits(images, module.text, size=(64, 64))
    assert not torch.allclose(want, squashed, atol=1e-3), "the input size must change the teacher's map"
    with pytest.raises(ValueError, match="teacher_size: input"):
        dense_cache_key(teacher, "maskclip", "input", None)
