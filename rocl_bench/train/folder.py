"""A training run's folder: what makes two runs the same run, and the files it holds (checkpoint.pt when
finished, last.pt after each epoch, metrics.jsonl, timing.json), guarded by one writer at a time."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator

from ..config import config_hash, to_dict
from ..errors import UserError
from ..locking import FolderLock
from ..methods import METHODS
from .checkpoint import atomic_write_bytes, load_checkpoint, remove_if_empty
from .spec import LATER_FIELDS, TrainConfig

CHECKPOINT, LAST, METRICS, TIMING = "checkpoint.pt", "last.pt", "metrics.jsonl", "timing.json"
PLACE_FIELDS = ("device", "data_root", "download")   # where a run happens, not what it computes


def identity_hash(cfg: TrainConfig, encoder_id: str | None = None) -> str:
    """What makes two runs the same run. Neither the device nor where the data lives changes the numbers, and the
    encoder counts by `encoder_id` (its content hash, or a suite model's key), not by how its path is spelled:
    a moved results folder or an absolute --out still resumes its runs."""
    fields = {k: v for k, v in to_dict(cfg).items() if k not in PLACE_FIELDS}
    for name, default in LATER_FIELDS.items():      # at their default they compute what runs before them did
        if fields.get(name) == default:
            fields.pop(name, None)
    fields["params"] = keyed_params(cfg)
    if cfg.encoder:
        fields["encoder"] = encoder_id or cfg.encoder
    return config_hash(fields)


def keyed_params(cfg: TrainConfig) -> dict[str, Any]:
    """The method's parameters as the key reads them: the written ones, relative to `Method.keyed_before` (what a
    parameter meant before it existed or its default changed). A parameter written at its old meaning is left
    out and one left unwritten whose default now means something else is put in, so a suite that pins the old
    value keeps its key and one that does not gets a new key, never a stale result."""
    params = dict(cfg.params)
    before = METHODS.get(cfg.method).keyed_before
    if not before:
        return params
    resolved = cfg.method_params("config")
    for key, old in before.items():
        old, now = (old(resolved) if callable(old) else old), getattr(resolved, key)
        if key in params:
            if now == old:
                del params[key]
        elif now != old:
            params[key] = to_dict(now)
    return params


def prepare_out(out: Path, resume: bool, ident: str) -> dict[str, Any] | None:
    """Check the output folder; return {"finished": checkpoint} or last.pt's state when resuming, None for a
    fresh run; refuse to mix two different runs in one folder."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a folder; choose a folder path")
    state = None
    for name in (CHECKPOINT, LAST):
        if (out / name).exists():
            if not resume:
                raise UserError(f"--out {out}: already holds a run ({name}); pass --resume to continue it "
                                "or choose another --out")
            ck = load_checkpoint(out / name, f"--out {out}/{name}")
            if ck.get("config_hash") != ident:
                raise UserError(f"--out {out}: holds a run with another configuration; "
                                "choose another --out for this one")
            if name == CHECKPOINT:
                return {"finished": ck}
            state = ck
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"--out {out}: cannot write there ({e.strerror}); choose a writable folder") from None
    return state


def write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(m, sort_keys=True) + "\n" for m in history)
    atomic_write_bytes(out / METRICS, lambda f: f.write(text.encode()))


def write_timing(out: Path, seconds: float) -> None:
    """Wall-clock time lives beside checkpoint.pt, not in it: the same seed gives the same checkpoint bytes."""
    atomic_write_bytes(out / TIMING, lambda f: f.write(json.dumps({"train_seconds": seconds}).encode()))


def read_seconds(out: Path) -> float | None:
    try:
        return float(json.loads((out / TIMING).read_text())["train_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def training_lock(out: Path, rank: int, fresh: bool = False) -> Iterator[None]:
    """One training process per folder: two writing the same last.pt would interleave their epochs. A `fresh`
    folder (made by this run) that is still empty when training fails (a full disk at the first save) is removed."""
    if rank != 0:
        yield
        return
    try:
        with FolderLock(out, "another training run ({who}) is writing this folder"):
            yield
    except BaseException:
        if fresh:
            remove_if_empty(out)
        raise
