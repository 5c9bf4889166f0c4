"""Trainable dense predictors that emit embeddings (pixels or regions), never fixed class logits."""
from .detection_backbones import build_backbone
from .detector import RegionEmbeddingDetector
from .ensemble import vild_blend
from .region_heads import DualBranchHead, EmbeddingBoxPredictor, EmbeddingRoIHeads
from .segmenter import PixelEmbeddingSegmenter, SpatialRegBlock

__all__ = [
    "DualBranchHead",
    "EmbeddingBoxPredictor",
    "EmbeddingRoIHeads",
    "PixelEmbeddingSegmenter",
    "RegionEmbeddingDetector",
    "SpatialRegBlock",
    "build_backbone",
    "vild_blend",
]
