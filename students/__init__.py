"""Trainable dense predictors that emit embeddings (pixels or regions), never fixed class logits."""
