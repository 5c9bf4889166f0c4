"""What users hit first on the real path: teacher/weights mismatches, local student weights for every encoder
family, command-line values, and files computed with another teacher — each refused or fixed with a clear message."""
from __future__ import annotations

import warnings

import pytest
import torch
from conftest import TINY_RN, TINY_TIMM, make_teacher, tiny_segmenter

from distill.seg_modules import LSeg, LSegDenseDistill, MaskCLIP, MaskCLIPPlus


def test_openai_weights_get_quick_gelu():
    from teachers.factory import _needs_quick_gelu

    with pytest.warns(UserWarning, match="trained with QuickGELU"):
        assert _needs_quick_gelu("ViT-B-16", "openai") is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _needs_quick_gelu("ViT-B-16-quickgelu", "openai") is False
        assert _needs_quick_gelu("ViT-B-16", "laion2b_s34b_b88k") is False


def test_sequence_first_open_clip_is_refused(rn_teacher):
    from teachers.factory import check_open_clip_layout

    vit = make_teacher("layout-vit", {"embed_dim": 24, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
                                      "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}})
    check_open_clip_layout(vit.model, "layout-vit")
    vit.model.visual.transformer.batch_first = False
    with pytest.raises(RuntimeError, match=r"open_clip_torch \S+ builds 'layout-vit' with sequence-first .* >= 3.0"):
        check_open_clip_layout(vit.model, "layout-vit")


def test_dense_methods_refuse_a_tower_without_a_dense_path_at_construction(timm_teacher):
    for cls in (LSegDenseDistill, MaskCLIPPlus):
        with pytest.raises(NotImplementedError, match=r"teacher_mode='maskclip'.*offers no dense mode.*EVA02"):
            cls(timm_teacher, tiny_segmenter(timm_teacher.embed_dim), class_names=["a", "b"], unseen=["b"])
    with pytest.raises(NotImplementedError, match="attention-pool"):
        MaskCLIP(timm_teacher, class_names=["a", "b"], unseen=["b"])
    LSeg(timm_teacher, tiny_segmenter(timm_teacher.embed_dim), class_names=["a", "b"], unseen=["b"])  # LSeg works with any teacher
    with pytest.raises(ValueError, match="has no student: set student: null"):
        MaskCLIP(timm_teacher, tiny_segmenter(timm_teacher.embed_dim))


@pytest.mark.parametrize("encoder, source", [
    ("resnet18", "torchvision"),          # a torchvision ImageNet file (fc.* left over)
    ("tu-resnet10t", "timm"),             # a plain timm state dict for smp's timm-universal encoder
    ("mit_b0", "encoder"),                # SegFormer encoder (its load_state_dict rejects strict)
    ("efficientnet-b0", "encoder"),
])
def test_local_encoder_weights_load_for_every_encoder_family(tmp_path, encoder, source):
    import segmentation_models_pytorch as smp
    import timm
    import torchvision

    from students import PixelEmbeddingSegmenter

    torch.manual_seed(3)
    if source == "torchvision":
        state = torchvision.models.resnet18().state_dict()
    elif source == "timm":
        state = timm.create_model("resnet10t", pretrained=False).state_dict()
    else:
        state = smp.create_model("FPN", encoder_name=encoder, encoder_weights=None).encoder.state_dict()
    path = tmp_path / "enc.pth"
    torch.save({"state_dict": state} if source == "torchvision" else state, path)
    model = PixelEmbeddingSegmenter(8, "FPN", encoder, encoder_weights=str(path))
    own = model.net.encoder.state_dict()
    checked = 0
    for key, value in state.items():
        mine = own.get(key, own.get(f"model.{key}"))
        if mine is not None and value.dtype.is_floating_point:
            torch.testing.assert_close(mine, value)
            checked += 1
    assert checked > 10
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"does not fit encoder|lacks \d+ of the \d+ tensors of encoder"):
        PixelEmbeddingSegmenter(8, "FPN", encoder, encoder_weights=str(tmp_path / "bad.pth"))
    torch.save({"unrelated.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"lacks \d+ of the \d+ tensors of encoder"):
        PixelEmbeddingSegmenter(8, "FPN", encoder, encoder_weights=str(tmp_path / "other.pth"))


def test_batch_of_one_in_deeplab_says_how_to_fix_it():
    from students import PixelEmbeddingSegmenter

    model = PixelEmbeddingSegmenter(8, "DeepLabV3Plus", "resnet18").train()
    with pytest.raises(ValueError, match="batch size of 2 or more per device"):
        model(torch.rand(1, 3, 64, 64))
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 8, 16, 16)  # the decoder's grid: logits are upsampled
    fpn = PixelEmbeddingSegmenter(8, "FPN", "resnet18", smp_kwargs={"decoder_segmentation_channels": 32}).eval()
    with pytest.raises(ValueError, match=r"1 image\(s\) of \(32, 32\) px .* or larger images"):
        fpn(torch.rand(1, 3, 32, 32))  # FPN's GroupNorm over a 1x1 deepest map, even in eval mode


def test_command_line_null_and_integer_counts():
    from jsonargparse import Namespace

    from pipelines.cli import _integer_trainer_values, _nulls_to_none, renamed_config, root_cause

    ns = Namespace(a=Namespace(b="None", c=[Namespace(d="null"), "x"]), e="none")
    _nulls_to_none(ns)
    assert ns.a.b is None and ns.a.c[0].d is None and ns.a.c[1] == "x" and ns.e == "none"
    got = _integer_trainer_values(["--trainer.limit_val_batches", "1", "--trainer.limit_test_batches=0.5", "--trainer.val_check_interval", "200"])
    assert got == {"limit_val_batches": 1, "val_check_interval": 200}
    assert renamed_config("configs/det/vild_ensemble_ov_coco.yaml") == (
        "-c configs/det/real.yaml -c configs/det/data/ov_coco.yaml -c configs/det/method/vild_ensemble.yaml"
    )
    err = ValueError("Does not validate against any of the Union subtypes\nErrors:\n  - Does not validate against any\n"
                     "    Errors:\n      - no network: put weights at X\n  - Expected a <class 'NoneType'>")
    assert root_cause(err) == "no network: put weights at X"


def test_a_typo_in_an_option_is_refused_at_parse_time(capsys):
    from pipelines.cli import main

    with pytest.raises(SystemExit) as info:
        main(["fit", "-c", "configs/seg/world.yaml", "-c", "configs/seg/method/lseg.yaml", "--model.init_args.inference", "slid",
              "--print_config"])
    assert info.value.code != 0
    err = capsys.readouterr().err
    assert "slid" in err and "whole" in err and "slide" in err


def test_proposals_of_another_teacher_are_refused():
    from distill.det_modules import check_region_teacher

    teacher = make_teacher("regions-rn", TINY_RN)
    meta = {"path": "p.pt", "teacher": "ViT-B-32@openai", "teacher_dim": 512}
    with pytest.raises(ValueError, match=r"p.pt holds 512-d region embeddings of teacher 'ViT-B-32@openai', but this run distils"):
        check_region_teacher(meta, teacher)
    check_region_teacher({**meta, "teacher": teacher.name, "teacher_dim": teacher.embed_dim}, teacher)
    check_region_teacher({"teacher": "x", "teacher_dim": None}, teacher)  # boxes only: embeddings come live


def test_timm_map_config_is_still_usable_for_text_and_images(timm_teacher):
    assert timm_teacher.dense_modes() == () and TINY_TIMM["vision_cfg"]["timm_pool"] == "map"
    assert timm_teacher.encode_image(torch.rand(1, 3, 40, 40)).shape == (1, timm_teacher.embed_dim)
