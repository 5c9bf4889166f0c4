"""Shards of teacher caches and proposal stores: safetensors files (never pickle) written atomically, each with
a checksum sidecar.

``shard-NNNNN.safetensors`` appears only complete (temporary file + rename); its sidecar
``shard-NNNNN.sha256`` (``<sha256> <bytes> <key digest>``) is written after it, also atomically. A shard
counts as done only when the sidecar exists and the file's size and SHA-256 match it: a truncated, corrupt
or foreign (other key) shard is named and recomputed, and a build killed at any point resumes.
"""
from __future__ import annotations

import hashlib
import os
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


class OpenShards:
    """The shards of one index, checked for size (a truncated or missing file is named at once) and opened
    lazily, one memory map per file and process: ``slice(file, name)[a:b]`` copies out just those rows."""

    def __init__(self, root: Path, records: list[dict], what: str, fix: str):
        self.root = Path(root)
        for record in records:
            path = self.root / record["file"]
            size = path.stat().st_size if path.is_file() else -1
            if size != record["bytes"]:
                state = "missing" if size < 0 else f"{size} bytes, expected {record['bytes']}"
                raise ValueError(f"{what} shard {path} is {state}; {fix}")
        self._handles: dict[str, object] = {}
        self._pid: int | None = None

    def slice(self, file: str, name: str):
        from safetensors import safe_open

        if self._pid != os.getpid():  # a DataLoader worker (fork) opens its own maps
            self._handles, self._pid = {}, os.getpid()
        if file not in self._handles:
            self._handles[file] = safe_open(str(self.root / file), framework="pt")
        return self._handles[file].get_slice(name)

    def __getstate__(self):
        return {**self.__dict__, "_handles": {}, "_pid": None}
