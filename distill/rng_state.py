"""The global random state a training step draws from, saved in a checkpoint and restored on resume.

Detection samplers (``torch.randperm`` in torchvision's RPN / RoI sampling) and dropout draw from the
global RNGs. Lightning restores the model, optimiser and loop counters but not these states, so a resumed
run would draw differently from the uninterrupted one. Stored as tensors and plain Python values, so the
checkpoint still loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import random

import numpy as np
import torch

KEY = "ovdistill_rng"


def capture() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict | None) -> None:
    if not state:
        return
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(value):
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def _to_tuples(value):
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value
