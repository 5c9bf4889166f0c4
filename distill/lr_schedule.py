"""Learning-rate schedules of the official recipes, stepped once per optimiser step.

``constant``  no decay (the wave-1 behaviour).
``poly``      LSeg (``lang-seg``'s ``LambdaLR(1 - t/T)^0.9``) and MaskCLIP+ (mmseg's ``poly``, power 0.9):
              ``lr * (1 - t/T)^0.9``.
``step``      ViLD (tensorflow/tpu ``vild_resnet.yaml``): ``lr`` until 90 % of the steps, ``lr / 10`` until 95 %,
              ``lr / 100`` after.

``warmup_steps`` multiplies any of them by a linear ramp ``(t + 1) / warmup_steps`` over the first steps (ViLD warms
up for 1000 of its 180k). ``T`` is the trainer's ``estimated_stepping_batches`` (``max_steps``, or the epochs' batches).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch

LRSchedule = Literal["constant", "poly", "step"]
SCHEDULES = ("constant", "poly", "step")
POLY_POWER = 0.9
STEP_DECAYS = ((0.9, 0.1), (0.95, 0.01))  # (fraction of the steps, lr factor from there on)


def lr_factor(kind: str, step: int, total: int, warmup_steps: int = 0) -> float:
    """The factor on the base learning rate at optimiser step ``step`` (0-based) of ``total``."""
    if kind not in SCHEDULES:
        raise ValueError(f"lr_schedule={kind!r}; expected one of {SCHEDULES}")
    progress = min(step, total) / total
    if kind == "poly":
        factor = (1.0 - progress) ** POLY_POWER
    elif kind == "step":
        factor = 1.0
        for at, f in STEP_DECAYS:
            if progress >= at:
                factor = f
    else:
        factor = 1.0
    if warmup_steps > 0 and step < warmup_steps:
        factor *= (step + 1) / warmup_steps
    return factor


def with_schedule(optimizer: torch.optim.Optimizer, kind: str, total_steps: Callable[[], float] | float, warmup_steps: int = 0):
    """What ``configure_optimizers`` returns: the optimiser alone for a constant rate without warm-up, else Lightning's
    dict with a ``LambdaLR`` stepped every optimiser step. ``total_steps`` may be a callable (read only when needed:
    a module without a trainer can still build its constant-rate optimiser)."""
    if kind not in SCHEDULES:
        raise ValueError(f"lr_schedule={kind!r}; expected one of {SCHEDULES}")
    if kind == "constant" and warmup_steps <= 0:
        return optimizer
    total_steps = total_steps() if callable(total_steps) else total_steps
    if not math.isfinite(total_steps) or total_steps <= 0:
        raise ValueError(
            f"lr_schedule={kind!r} decays over the run, but the trainer's length is {total_steps}: set trainer.max_steps "
            "(or max_epochs), or lr_schedule: constant"
        )
    total = int(total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(kind, step, total, warmup_steps))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}
