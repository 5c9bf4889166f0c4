"""Segmentation student, losses, pseudo labels, inference and data: values against direct computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_RN, make_teacher, tiny_segmenter
from PIL import Image

from distill.seg_inference import slide_inference, whole_inference
from distill.seg_losses import dense_feature_loss, pseudo_labels, remap_to_subset
from distill.seg_modules import LSeg, MaskCLIP
from pipelines.data.seg_datamodule import SegFolderDataModule, WorldSegDataModule
from pipelines.data.seg_folder import SegFolderDataset


def test_student_logits_are_scaled_cosines_and_vocabulary_is_free():
    student = tiny_segmenter(12)
    images = torch.rand(2, 3, 32, 32)
    emb = student(images)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2, 32, 32))
    text = torch.randn(5, 12)
    logits = student.classify(emb, text, 10.0)
    manual = 10.0 * torch.einsum("bdhw,kd->bkhw", emb, F.normalize(text, dim=-1))
    torch.testing.assert_close(logits, manual)
    torch.testing.assert_close(student.classify(emb, text[[4, 1]], 10.0), manual[:, [4, 1]])
    with pytest.raises(ValueError, match="7-d but the student emits 12-d"):
        student.classify(emb, torch.randn(3, 7), 1.0)


def test_fpn_upsamples_the_logits_as_lseg_or_the_embeddings_as_smp():
    from students import PixelEmbeddingSegmenter

    fpn = {"arch": "FPN", "smp_kwargs": {"decoder_pyramid_channels": 16, "decoder_segmentation_channels": 32}}
    torch.manual_seed(0)
    lseg = PixelEmbeddingSegmenter(8, **fpn).eval()
    smp_way = PixelEmbeddingSegmenter(8, upsample="embeddings", **fpn).eval()
    smp_way.load_state_dict(lseg.state_dict())  # the upsampling has no weights: same network, two orders
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        decoded = lseg.net.decoder(lseg.net.encoder((images - lseg.mean) / lseg.std))
        raw = lseg.net.segmentation_head[0](decoded)  # the head's convolution, at a quarter of the input
        emb, full = lseg(images), smp_way(images)
        text = torch.randn(5, 8)
        logits = lseg.classify(emb, text, 10.0, size=(64, 64))
    torch.testing.assert_close(emb, F.normalize(raw, dim=1))
    up = F.interpolate(raw, scale_factor=4, mode="bilinear", align_corners=True)  # smp's head's own upsampling
    torch.testing.assert_close(full, F.normalize(up, dim=1))
    small = 10.0 * torch.einsum("bdhw,kd->bkhw", F.normalize(raw, dim=1), F.normalize(text, dim=-1))
    torch.testing.assert_close(logits, F.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False))
    same = lseg.classify(full, text, 10.0, size=(64, 64))  # already at that size: not resized
    torch.testing.assert_close(same, 10.0 * torch.einsum("bdhw,kd->bkhw", full, F.normalize(text, dim=-1)))
    with pytest.raises(ValueError, match="upsample='pixels'"):
        PixelEmbeddingSegmenter(8, upsample="pixels", **fpn)


def test_learnable_background_replaces_that_row_only():
    from students import PixelEmbeddingSegmenter

    student = PixelEmbeddingSegmenter(8, encoder_depth=3, decoder_channels=(16, 8, 8), learnable_background=True)
    emb = student(torch.rand(1, 3, 32, 32))
    text = torch.randn(3, 8)
    out = student.classify(emb, text, 1.0, background_index=1)
    plain = student.classify(emb, text, 1.0)
    torch.testing.assert_close(out[:, [0, 2]], plain[:, [0, 2]])
    bg = torch.einsum("bdhw,d->bhw", emb, F.normalize(student.background, dim=0))
    torch.testing.assert_close(out[:, 1], bg)


def test_unused_encoder_stages_are_frozen_for_ddp():
    student = tiny_segmenter(8)
    frozen = [n for n, p in student.named_parameters() if not p.requires_grad]
    assert frozen and all(".layer3." in n or ".layer4." in n for n in frozen)
    emb = student(torch.rand(1, 3, 32, 32))
    emb.sum().backward()
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)


def test_dense_feature_loss_pools_student_to_teacher_grid():
    s = F.normalize(torch.randn(2, 6, 8, 8), dim=1)
    t = torch.randn(2, 6, 2, 2)
    pooled = F.normalize(s.reshape(2, 6, 2, 4, 2, 4).mean(dim=(3, 5)), dim=1)
    cos = (pooled * F.normalize(t, dim=1)).sum(1)
    assert dense_feature_loss(s, t, "cosine") == pytest.approx(float((1 - cos).mean()), abs=1e-6)
    l1 = (pooled - F.normalize(t, dim=1)).abs().sum(1).mean()
    assert dense_feature_loss(s, t, "l1") == pytest.approx(float(l1), abs=1e-6)
    assert dense_feature_loss(t, t) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="6-d, teacher dense features 5-d"):
        dense_feature_loss(s, torch.randn(2, 5, 2, 2))


def test_remap_to_subset():
    target = torch.tensor([[0, 1, 2, 3, 255]])
    assert remap_to_subset(target, [0, 2, 3]).tolist() == [[0, 255, 1, 2, 255]]


def test_pseudo_labels_transductive_and_annotation_free():
    target = torch.tensor([[[1, 255, 255, 0]]])
    scores = torch.zeros(1, 4, 1, 4)
    scores[0, 2, 0, 1] = 5.0  # unseen 2 wins at pixel 1
    scores[0, 3, 0, 2] = 0.1  # unseen 3 barely wins at pixel 2
    scores[0, 0, 0, :] = 9.0  # a seen class dominates everywhere: must not leak into transductive labels
    out = pseudo_labels(target, scores, unseen=[2, 3])
    assert out.tolist() == [[[1, 2, 3, 0]]]
    out = pseudo_labels(target, scores, unseen=[2, 3], threshold=0.9)
    assert out.tolist() == [[[1, 2, 255, 0]]]
    free = pseudo_labels(target, scores, unseen=[2, 3], transductive=False)
    assert free.tolist() == [[[0, 0, 0, 0]]]


def test_slide_inference_equals_whole_for_a_pointwise_predictor():
    weight = torch.randn(4, 3)

    def fn(x):
        return torch.einsum("bchw,kc->bkhw", x, weight)

    images = torch.rand(1, 3, 70, 90)
    whole = whole_inference(fn, images)
    torch.testing.assert_close(whole, fn(images))
    torch.testing.assert_close(slide_inference(fn, images, 4, crop=32, stride=20), whole)


def test_maskclip_slides_its_teacher_over_windows_when_asked(vit_teacher):
    """``inference: slide`` is honoured by training-free MaskCLIP (it used to be ignored): each window goes through the
    teacher on its own, and the overlap is the mean of the two windows' logits."""
    images = torch.rand(1, 3, 32, 56, generator=torch.Generator().manual_seed(0))
    kw = {"class_names": ["background", "circle", "square"], "unseen": ["square"], "teacher_stride": 8}
    whole, slide = MaskCLIP(vit_teacher, **kw), MaskCLIP(vit_teacher, inference="slide", crop=32, stride=24, **kw)
    for m in (whole, slide):
        m.setup("test")

    def teacher(x):
        return vit_teacher.dense_logits(x, whole.text, output_stride=8)

    torch.testing.assert_close(whole.predict_logits(images), teacher(images))
    left, right = teacher(images[..., :32]), teacher(images[..., 24:])  # windows at x = 0 and x = 24
    got = slide.predict_logits(images)
    torch.testing.assert_close(got[..., :24], left[..., :24])
    torch.testing.assert_close(got[..., 32:], right[..., 8:])
    torch.testing.assert_close(got[..., 24:32], (left[..., 24:] + right[..., :8]) / 2)
    assert (got - teacher(images)).abs().max() > 1e-3  # windows differ from the whole image, so the checks above mean something


def _write_pair(root, name, image, label):
    (root / "img").mkdir(exist_ok=True)
    (root / "lab").mkdir(exist_ok=True)
    Image.fromarray(image).save(root / "img" / f"{name}.png")
    Image.fromarray(label).save(root / "lab" / f"{name}.png")


def test_seg_folder_bad_inputs_name_the_file(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    _write_pair(tmp_path, "a", img, np.full((8, 8), 7, np.uint8))
    ds = SegFolderDataset(tmp_path / "img", tmp_path / "lab", num_classes=5)
    with pytest.raises(ValueError, match=r"a\.png holds values \[7\] outside the 5 classes"):
        ds[0]
    _write_pair(tmp_path, "a", img, np.zeros((8, 9), np.uint8))
    with pytest.raises(ValueError, match=r"is \(8, 8\) but label .*a\.png is \(8, 9\)"):
        ds[0]
    Image.fromarray(img).save(tmp_path / "img" / "b.png")
    with pytest.raises(FileNotFoundError, match=r"b\.png"):
        SegFolderDataset(tmp_path / "img", tmp_path / "lab", num_classes=5)
    (tmp_path / "lab" / "b.png").write_bytes(b"not a png")
    ds = SegFolderDataset(tmp_path / "img", tmp_path / "lab", num_classes=5)
    with pytest.raises(ValueError, match=r"cannot read label .*b\.png"):
        ds[1]


def test_reduce_zero_label(tmp_path):
    _write_pair(tmp_path, "a", np.zeros((2, 2, 3), np.uint8), np.array([[0, 1], [2, 255]], np.uint8))
    ds = SegFolderDataset(tmp_path / "img", tmp_path / "lab", num_classes=3, reduce_zero_label=True)
    assert ds[0]["label"].tolist() == [[255, 0], [1, 255]]


def test_unknown_preset_and_dimension_mismatch():
    with pytest.raises(ValueError, match="unknown segmentation preset 'vocc'"):
        SegFolderDataModule("/nowhere", preset="vocc")
    with pytest.raises(ValueError, match="use 'voc20'"):
        SegFolderDataModule("/nowhere", preset="voc")
    teacher = make_teacher("dim-rn", TINY_RN)
    with pytest.raises(ValueError, match="embed_dim=10 but teacher .* 24-d"):
        LSeg(teacher, tiny_segmenter(10), class_names=["a", "b"], unseen=["b"])


@pytest.mark.parametrize(
    "preset, classes, seen, unseen, rzl, first",
    [
        ("voc20", 20, 15, 5, True, "aeroplane"),            # SPNet / ZegCLIP / MaskCLIP+: background ignored
        ("context59", 59, 49, 10, True, "aeroplane"),       # ZegCLIP-style, background ignored
        ("context60", 60, 50, 10, False, "background"),     # ZS3Net / MaskCLIP+: background is a (seen) class
        ("coco_stuff171", 171, 156, 15, False, "person"),
        ("ade20k150", 150, 150, 0, True, "wall"),
    ],
)
def test_presets_match_the_literature(preset, classes, seen, unseen, rzl, first):
    dm = SegFolderDataModule("/d", preset=preset)
    assert len(dm.class_names) == classes and len(dm.class_names) - len(dm.unseen) == seen and len(dm.unseen) == unseen
    assert dm.reduce_zero_label is rzl and dm.class_names[0] == first
    if preset == "voc20":
        assert dm.unseen == ["pottedplant", "sheep", "sofa", "train", "tvmonitor"]
    if preset.startswith("context"):
        assert set(dm.unseen) == {"cow", "motorbike", "sofa", "cat", "boat", "fence", "bird", "tvmonitor", "keyboard", "aeroplane"}
    if preset == "coco_stuff171":
        assert set(dm.unseen) == {"cow", "giraffe", "suitcase", "frisbee", "skateboard", "carrot", "scissors", "cardboard",
                                  "clouds", "grass", "playingfield", "river", "road", "tree", "wall-concrete"}


def test_world_datamodule_reads_vocabulary(tiny_world):
    dm = WorldSegDataModule(str(tiny_world))
    assert dm.class_names[0] == "background" and set(dm.unseen) == {"star", "heart", "ring"}
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape[1:] == (3, 64, 64) and batch["label"].dtype == torch.long
