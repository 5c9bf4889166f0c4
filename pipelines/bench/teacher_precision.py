"""The precision of the demo teacher's inference passes: bf16 where the CPU multiplies bf16 natively, fp32 elsewhere.

The teacher is frozen, so its passes (crops, regions, dense maps, text) are pure inference, which is what users of
open_clip run in low precision on accelerators. On a CPU with AVX512-BF16 or AMX, oneDNN runs the embedded teacher's
convolutions in bf16 about twice as fast as in fp32 (``python benchmarks/teacher_throughput.py --models embedded
--precision fp32 bf16``); without them bf16 is emulated and slower, so ``auto`` keeps fp32 there. Students always
train in fp32.
"""
from __future__ import annotations

import torch

CHOICES = ("auto", "fp32", "bf16")


def native_bf16_cpu() -> bool:
    """True where the CPU has bf16 dot-product instructions (x86 AVX512-BF16 or AMX tiles)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's own feature probes
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def teacher_precision(choice: str, device="cpu") -> tuple[str, str]:
    """``(precision, why)`` for a ``--teacher-precision`` choice; ``auto``: bf16 on a native-bf16 CPU, fp32 elsewhere
    (an accelerator keeps fp32 here: the demo's figures were chosen that way)."""
    if choice not in CHOICES:
        raise ValueError(f"teacher precision {choice!r}; expected one of {CHOICES}")
    if choice != "auto":
        return choice, "asked for"
    if torch.device(device).type != "cpu":
        return "fp32", f"auto: {torch.device(device).type} device"
    if native_bf16_cpu():
        return "bf16", "auto: this CPU multiplies bf16 natively"
    return "fp32", "auto: this CPU has no native bf16"
