"""Tiny random-initialised open_clip architectures declared inline, shared by the tests."""
from __future__ import annotations

import warnings

import pytest
import torch

TEXT_CFG = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}

TINY_VIT = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": TEXT_CFG,
}
TINY_RN = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16, "patch_size": None},
    "text_cfg": TEXT_CFG,
}
# A timm tower with a SigLIP-style attention-pool (MAP) head.
TINY_TIMM = {
    "embed_dim": 64,  # timm_proj "none": the MAP head's output (test_vit width 64) is the embedding
    "vision_cfg": {"image_size": 160, "timm_model_name": "test_vit", "timm_pool": "map", "timm_proj": "none"},
    "text_cfg": TEXT_CFG,
}

# A timm CNN tower with an average-pool + linear head (the embedded teacher's kind).
TINY_TIMM_CNN = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 64, "timm_model_name": "resnet18", "timm_pool": "avg", "timm_proj": "linear"},
    "text_cfg": TEXT_CFG,
}


def make_teacher(name: str, cfg: dict, seed: int = 0, **kwargs):
    from teachers import OpenCLIPTeacher

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return OpenCLIPTeacher(name, None, model_cfg=cfg, **kwargs)


def _teacher_fixture(fixture: str, model_name: str, cfg: dict):
    """A session-wide tiny teacher, built once."""
    return pytest.fixture(scope="session", name=fixture)(lambda: make_teacher(model_name, cfg))


vit_teacher = _teacher_fixture("vit_teacher", "tiny-vit-test", TINY_VIT)
rn_teacher = _teacher_fixture("rn_teacher", "tiny-rn-test", TINY_RN)
timm_teacher = _teacher_fixture("timm_teacher", "tiny-timm-map-test", TINY_TIMM)
timm_cnn_teacher = _teacher_fixture("timm_cnn_teacher", "tiny-timm-cnn-test", TINY_TIMM_CNN)


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 48, 40, generator=g)


def tiny_segmenter(embed_dim: int, seed: int = 0, image_head: bool = False):
    """A small smp Unet (resnet18 cut to 3 stages) emitting ``embed_dim``-d pixel embeddings (two heads with
    ``image_head``)."""
    from students import PixelEmbeddingSegmenter

    torch.manual_seed(seed)
    return PixelEmbeddingSegmenter(embed_dim, encoder_depth=3, decoder_channels=(32, 16, 8), image_head=image_head)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    from pipelines.world import SceneConfig, WorldSpec, write_world

    spec = WorldSpec(seed=5, splits={"train": 16, "val": 8, "test": 8}, scene=SceneConfig(image_size=64, min_radius=6, max_radius=16))
    return write_world(spec, tmp_path_factory.mktemp("tiny") / "world", progress=False)
