"""Offline steps between trainings: checkpoint loading, distributed prediction passes, proposals, pseudo labels."""
