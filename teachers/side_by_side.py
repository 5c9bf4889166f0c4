"""CPU inference side by side: independent pieces of teacher work run in Python threads, one per torch thread,
each with single-threaded kernels.

On a few CPU cores, one forward on small tensors spread over every core by intra-op parallelism leaves the
cores partly idle; independent forwards each on one core keep them busy (torch releases the GIL inside an
operator). Kernel results also depend on the thread count, so with one kernel thread a piece's values are those
of a one-thread run whatever else runs beside it. On a GPU nothing changes: pieces run one after another.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


@contextmanager
def one_kernel_thread(device: torch.device) -> Iterator[None]:
    """Single-threaded CPU kernels inside the block (re-entrant: an inner use changes nothing)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def map_side_by_side(fn: Callable[[T], R], items: Sequence[T], device: torch.device) -> list[R]:
    """``[fn(x) for x in items]``, in order; on CPU up to ``torch.get_num_threads()`` items at a time, each in a
    thread of its own with one kernel thread and the caller's grad mode. A single item, a GPU or one torch thread:
    a plain loop (the caller's threads)."""
    threads = torch.get_num_threads()
    workers = min(len(items), threads) if device.type == "cpu" else 1
    if workers <= 1:
        return [fn(x) for x in items]
    grad = torch.is_grad_enabled()  # grad mode is per thread; a new thread starts with it on

    def work(x: T) -> R:
        torch.set_num_threads(1)  # the only place workers get one kernel thread (the count is global in most builds)
        with torch.set_grad_enabled(grad):
            return fn(x)

    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(work, items))
    finally:
        torch.set_num_threads(threads)
