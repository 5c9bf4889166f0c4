"""Trainable dense predictors that emit embeddings (pixels or regions), never fixed class logits."""
from .segmenter import PixelEmbeddingSegmenter, SpatialRegBlock

__all__ = ["PixelEmbeddingSegmenter", "SpatialRegBlock"]
