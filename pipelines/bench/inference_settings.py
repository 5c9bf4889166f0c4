"""Several inference-only settings of one segmenter, scored from one network pass per batch.

Dense distillation's ``ensemble_lambda`` and ``calibration``, and training-free MaskCLIP's ``background_threshold`` and
``logit_scale``, act at inference only, so a val question that asks about every setting need not run the network once
per setting. Here the student (or, for training-free MaskCLIP, the teacher's dense map) runs once per batch. Every
setting is then scored through the module's own prediction path (padding, head blend, calibration, resize to the
label, background rule), with its own copy of the module's metric. The figures equal a ``Trainer.validate`` per setting
(``tests/test_inference_settings.py``).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

#: the network calls a module's prediction path makes: the student's (``forward`` for one head, ``forward_heads`` for
#: two), or training-free MaskCLIP's teacher map
_STUDENT_CALLS = ("forward", "forward_heads")
_TEACHER_CALLS = ("dense_logits",)


def _same(a, b) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and (a is b or torch.equal(a, b))
    return a == b


@contextmanager
def _replayed(part: nn.Module, calls: tuple[str, ...] = _STUDENT_CALLS) -> Iterator[None]:
    """Within the block, each of ``part``'s ``calls`` runs on its first arguments and replays that output afterwards.
    Other arguments raise: a replay is only right for the batch (and options) it was computed on."""
    memo: dict[str, tuple[tuple, dict, object]] = {}
    originals = {name: getattr(part, name) for name in calls if hasattr(part, name)}

    def replay(name: str, fn):
        def call(*args, **kwargs):
            if name not in memo:
                memo[name] = (args, kwargs, fn(*args, **kwargs))
            seen_args, seen_kwargs, out = memo[name]
            if len(args) != len(seen_args) or kwargs.keys() != seen_kwargs.keys() or not (
                all(_same(a, b) for a, b in zip(args, seen_args, strict=True)) and all(_same(kwargs[k], seen_kwargs[k]) for k in kwargs)
            ):
                raise RuntimeError(f"{name} replayed for another input: one batch per replay block")
            return out
        return call

    for name, fn in originals.items():
        setattr(part, name, replay(name, fn))
    try:
        yield
    finally:
        for name in originals:
            delattr(part, name)  # the class's method again


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
                # a training-free module (no student) predicts from the teacher's dense map
                part, calls = (module.student, _STUDENT_CALLS) if module.student is not None else (module.teacher, _TEACHER_CALLS)
                with _replayed(part, calls):
                    for setting, metric in zip(settings, metrics, strict=True):
                        module.hparams.update(setting)
                        module.val_metric = metric  # validation_step updates the module's val metric
                        module.validation_step(batch, batch_idx)
    finally:
        module.val_metric = own_metric
        module.hparams.update(saved)
        module.train(was_training)
    return [{k: v for k, v in m.compute().items() if k != "IoU_per_class"} for m in metrics]
