"""Shards of teacher caches and proposal stores: safetensors files (never pickle) written atomically, each with
a checksum sidecar.

``shard-NNNNN.safetensors`` appears only complete (temporary file + rename); its sidecar
``shard-NNNNN.sha256`` (``<sha256> <bytes> <key digest>``) is written after it, also atomically. A shard
counts as done only when the sidecar exists and the file's size and SHA-256 match it: a truncated, corrupt
or foreign (other key) shard is named and recomputed, and a build killed at any point resumes.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from torch import Tensor

from .atomic import save_text, save_with


def sidecar(path: Path) -> Path:
    return path.with_suffix(".sha256")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_shard(path: Path, tensors: dict[str, Tensor], digest: str) -> dict:
    """Write ``tensors`` (contiguous) as one shard tagged with the cache key ``digest``; returns its record."""
    from safetensors.torch import save

    data = save({k: v.contiguous() for k, v in tensors.items()}, metadata={"key": digest})
    try:
        save_with(lambda fh: fh.write(data), path)
        sha = hashlib.sha256(data).hexdigest()
        save_text(f"{sha} {len(data)} {digest}\n", sidecar(path))
    except OSError as err:  # disk full, permissions: the shards written before stay valid
        raise OSError(f"could not write teacher cache shard {path} ({len(data)} bytes): {err}; earlier shards are intact, "
                      "free space and run the same command again to finish") from err
    rows = next(iter(tensors.values())).shape[0]
    return {"file": path.name, "rows": int(rows), "bytes": len(data), "sha256": sha}


def check_shard(path: Path, digest: str, rows: int) -> tuple[dict | None, str]:
    """``(record, "")`` for a complete shard of this key, else ``(None, why not)``."""
    if not path.is_file():
        return None, "missing"
    side = sidecar(path)
    if not side.is_file():
        return None, "no checksum (the build stopped while writing it)"
    try:
        sha, size, key = side.read_text().split()
        size = int(size)
    except ValueError:
        return None, f"unreadable checksum file {side.name}"
    if key != digest:
        return None, "built under another key (teacher or preprocessing changed)"
    actual = path.stat().st_size
    if actual != size:
        return None, f"truncated: {actual} of {size} bytes"
    if file_sha256(path) != sha:
        return None, "checksum mismatch (corrupt)"
    return {"file": path.name, "rows": rows, "bytes": size, "sha256": sha}, ""
