"""One checkpoint format for every method: saved atomically, loaded with weights_only=True only."""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError

FORMAT_VERSION = 1


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, fsync, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    payload = {"format_version": FORMAT_VERSION, **payload}
    atomic_write_bytes(Path(path), lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path, where: str = "checkpoint") -> dict[str, Any]:
    """Load a checkpoint or a plain state_dict; refuse anything that would need pickle to run code."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{where}: {p} not found; pass the path of a checkpoint.pt written by rocl-bench train")
    if p.stat().st_size == 0:
        raise UserError(f"{where}: {p} is empty; re-create it (e.g. rerun the training command)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(f"{where}: {p} needs pickle to load and was refused (weights_only=True): "
                        f"{str(e).splitlines()[0][:160]}; only tensors and plain containers are accepted") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise UserError(f"{where}: {p} is not a readable checkpoint ({e.__class__.__name__}: "
                        f"{str(e).splitlines()[0][:120]}); it may be truncated, re-create it") from None
    if not isinstance(obj, dict):
        raise UserError(f"{where}: {p} holds a {type(obj).__name__}, not a checkpoint dict or a state_dict")
    if "format_version" in obj:
        if obj["format_version"] > FORMAT_VERSION:
            raise UserError(f"{where}: {p} has format {obj['format_version']}, newer than this rocl-bench "
                            f"understands ({FORMAT_VERSION}); upgrade rocl-bench")
        return obj
    if all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"format_version": 0, "state_dict": obj}
    raise UserError(f"{where}: {p} is neither a rocl-bench checkpoint nor a plain state_dict")
