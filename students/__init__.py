"""Trainable dense predictors that emit embeddings (pixels or regions), never fixed class logits."""
from .detector import EmbeddingBoxPredictor, RegionEmbeddingDetector, build_backbone
from .segmenter import PixelEmbeddingSegmenter, SpatialRegBlock

__all__ = ["EmbeddingBoxPredictor", "PixelEmbeddingSegmenter", "RegionEmbeddingDetector", "SpatialRegBlock", "build_backbone"]
