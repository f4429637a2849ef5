"""Append-only result records: each finished cell is added by rewriting the file atomically (never a torn line)."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

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
    from .. import __version__

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


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def peak_memory_mb(device_type: str) -> float:
    """CUDA: max allocated since the last reset (per cell); CPU: the process's peak RSS so far."""
    if device_type == "cuda":
        import torch
        return torch.cuda.max_memory_allocated() / 2**20
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ResultsLock:
    """One writer per results folder: a lock file holding the owner's pid; a dead owner's lock is taken over."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / ".lock"

    def __enter__(self) -> "ResultsLock":
        from ..errors import UserError

        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner and _alive(owner):
                    raise UserError(f"{self.path.parent}: another rocl-bench run (pid {owner}) is writing this "
                                    "results folder; wait for it or pass another --out") from None
                self.path.unlink(missing_ok=True)          # stale: its owner is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise UserError(f"{self.path}: could not take the results lock; remove the file if no run is active")

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def __exit__(self, *exc: Any) -> None:
        if self._owner() == os.getpid():
            self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
