"""What a record says about where it came from (versions, commit, time, memory), and the results-folder lock.

The record itself, its file and its append live in `rocl_bench.record`."""
from __future__ import annotations

import functools
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from ..locking import FolderLock


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """rocl_bench and the attack libraries' versions: a number is only comparable with the code that made it."""
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
    """The commit of the checkout this package runs from, or None outside git."""
    here = Path(__file__).resolve().parent
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


def timestamp() -> str:
    """UTC, to the second: when the cell finished."""
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
