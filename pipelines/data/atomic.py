"""Atomic file writes: a reader sees the old file or the new one, never half of one."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: str | os.PathLike, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer killed with SIGKILL
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a result file is as readable as any other
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_torch(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same directory, then rename over ``path``."""
    return _atomic(path, lambda fh: torch.save(obj, fh))


def save_json(obj, path: str | os.PathLike) -> Path:
    return _atomic(path, lambda fh: fh.write(json.dumps(obj, indent=2, sort_keys=True).encode()))


def save_text(text: str, path: str | os.PathLike) -> Path:
    return _atomic(path, lambda fh: fh.write(text.encode()))


def save_with(write, path: str | os.PathLike) -> Path:
    """``write(binary file handle)`` into a temporary file, then rename over ``path`` (figures, custom formats)."""
    return _atomic(path, write)
