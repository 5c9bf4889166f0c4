"""Losses, metrics and LightningModules pairing a frozen teacher with a trainable student."""
