"""Loading a method checkpoint into a module outside the Trainer: never runs pickled code, loads strictly.

``torch.load(weights_only=True)`` refuses any pickled object that is not plain data, so a shared or
downloaded checkpoint cannot execute code. The module's ``on_load_checkpoint`` checks the kind of
model, its teacher and vocabulary and supplies the (rebuilt, never stored) teacher's keys; everything
else must match exactly.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from distill.teacher_student import CHECKPOINT_KEY


def read_checkpoint(path: str | Path) -> dict:
    """A Lightning checkpoint as plain data; a clear error for a missing, foreign or unsafe file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist (resolved in {p.parent.resolve()})")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"refusing checkpoint {p}: it holds pickled objects that are not plain tensors/data "
            f"(ovdistill loads checkpoints with weights_only=True, so a file cannot run code): {str(err).splitlines()[0]}"
        ) from err
    except Exception as err:  # truncated zip, not a torch file, ...
        raise ValueError(f"cannot read checkpoint {p}: {err}") from err
    if not isinstance(state, dict) or "state_dict" not in state:
        keys = sorted(state)[:6] if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{p} is not a Lightning checkpoint of an ovdistill method (no 'state_dict'; it holds {keys}); "
            "give the last.ckpt written by `ovdistill fit`"
        )
    return state


def load_into(module, path: str | Path) -> dict:
    """Load ``path`` into ``module`` strictly (its teacher excepted, rebuilt from the config)."""
    state = read_checkpoint(path)
    module.on_load_checkpoint(state)
    try:
        module.load_state_dict(state["state_dict"], strict=True)
    except RuntimeError as err:
        held = (state.get(CHECKPOINT_KEY) or {}).get("module")
        held = f" (it holds a {held})" if held else ""
        raise ValueError(f"checkpoint {path}{held} does not fit {type(module).__name__} as configured: {str(err)[:600]}") from err
    return state
