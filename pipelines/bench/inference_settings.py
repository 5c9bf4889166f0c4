"""Several inference-only settings of one trained segmenter, scored from one student pass per batch.

Dense distillation's ``ensemble_lambda`` and ``calibration`` act at inference only, so a val question that asks about
every pair need not run the student once per pair. Here the student runs once per batch. Every setting is then scored
through the module's own prediction path (padding, head blend, calibration, resize to the label), with its own copy of
the module's metric. The figures equal a ``Trainer.validate`` per setting (``tests/test_inference_settings.py``).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

#: the student calls a module's prediction path makes (``forward`` for one head, ``forward_heads`` for two)
_STUDENT_CALLS = ("forward", "forward_heads")


@contextmanager
def _replayed_student(student: nn.Module) -> Iterator[None]:
    """Within the block, each student call runs on its first input and replays that output afterwards. A different
    input raises: a replay is only right for the batch it was computed on."""
    memo: dict[str, tuple[Tensor, object]] = {}
    originals = {name: getattr(student, name) for name in _STUDENT_CALLS if hasattr(student, name)}

    def replay(name: str, fn):
        def call(x: Tensor):
            if name not in memo:
                memo[name] = (x, fn(x))
            seen, out = memo[name]
            if x is not seen and not torch.equal(x, seen):
                raise RuntimeError(f"student.{name} replayed for another input: one batch per replay block")
            return out
        return call

    for name, fn in originals.items():
        setattr(student, name, replay(name, fn))
    try:
        yield
    finally:
        for name in originals:
            delattr(student, name)  # the class's method again


def score_inference_settings(module, batches: Iterable[dict], settings: list[dict]) -> list[dict[str, float]]:
    """The module's val metric (``compute()``: mIoU, mIoU_seen, mIoU_unseen, hIoU) under each of ``settings`` (hparams
    that act at inference only, such as ``{"ensemble_lambda": 0.85, "calibration": -0.3}``), over ``batches``.

    The module's own hparams are restored afterwards."""
    if not settings:
        return []
    keys = {k for s in settings for k in s}
    missing = keys - set(module.hparams)
    if missing:
        raise KeyError(f"{type(module).__name__} has no hparams {sorted(missing)}")
    saved = {k: module.hparams[k] for k in keys}
    own_metric = module.val_metric
    metrics = [own_metric.clone() for _ in settings]
    for m in metrics:
        m.reset()
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            for batch_idx, batch in enumerate(batches):
                batch = {k: v.to(module.device) if isinstance(v, Tensor) else v for k, v in batch.items()}
                with _replayed_student(module.student):
                    for setting, metric in zip(settings, metrics):
                        module.hparams.update(setting)
                        module.val_metric = metric  # validation_step updates the module's val metric
                        module.validation_step(batch, batch_idx)
    finally:
        module.val_metric = own_metric
        module.hparams.update(saved)
        module.train(was_training)
    return [{k: v for k, v in m.compute().items() if k != "IoU_per_class"} for m in metrics]
