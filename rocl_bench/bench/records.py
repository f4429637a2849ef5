"""Append-only result records: each finished cell is added by rewriting the file atomically (never a torn line)."""
from __future__ import annotations

import functools
import json
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from ..locking import FolderLock
from ..train.checkpoint import atomic_write_bytes

RECORDS = "records.jsonl"
TIMING_FIELDS = ("seconds", "peak_memory_mb", "timestamp", "train_seconds")


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Add one record. The whole file is rewritten to a temporary file and renamed, so a kill at any moment
    leaves either the old file or the new one, never a truncated line."""
    old = path.read_bytes() if path.exists() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    atomic_write_bytes(path, lambda f: f.write(old + line))


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    from ..version import __version__

    out = {"rocl_bench": __version__}
    for dist, key in (("torch", "torch"), ("torchattacks", "torchattacks"), ("pyautoattack", "pyautoattack")):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = "missing"
    return out


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


def timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def peak_memory_mb(device_type: str) -> float:
    """CUDA: max allocated since the last reset (per cell); CPU: the process's peak RSS so far."""
    if device_type == "cuda":
        import torch
        return torch.cuda.max_memory_allocated() / 2**20
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ResultsLock(FolderLock):
    """One `rocl-bench run` per results folder."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, "another rocl-bench run ({who}) is writing this results folder")
