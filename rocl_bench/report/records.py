"""Read evaluation records (`records.jsonl`), keep the latest record per cell, and (de)code robust masks.

One JSON object per line, written by the evaluation runner. A line that is not a JSON object with the
fields a report needs is reported on stderr with its line number and skipped, never dropped silently.
When a suite was re-run, several records can exist for the same (model, attack, source) cell: the LAST
one in the file wins.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..config import hidden_char, read_limited, refuse_json_constant, shown
from ..errors import UserError

RECORDS_FILE = "records.jsonl"
REQUIRED = ("model", "attack", "robust_accuracy")

WHITE_BOX = ("pgd", "fgsm", "cw", "apgd", "eot-pgd")
ATTACK_TYPES = ("clean",) + WHITE_BOX + ("autoattack", "square", "transfer")
NORMS = ("linf", "l2", "l1")

# Readable method names, used only when a record has no `label`.
METHOD_NAMES = {"standard": "Standard", "madry": "Madry AT", "trades": "TRADES", "simclr": "SimCLR",
                "rocl": "RoCL"}

Warn = Callable[[str], None]


def warn_stderr(message: str) -> None:
    print(f"rocl-bench: warning: {message}", file=sys.stderr)


# --------------------------------------------------------------------------------------------- masks
def encode_mask(mask: Any) -> str:
    """Bool tensor/array of length n -> base64 of numpy.packbits(mask, bitorder='little')."""
    if hasattr(mask, "detach"):  # torch tensor, without importing torch here
        mask = mask.detach().cpu().numpy()
    arr = np.asarray(mask).astype(bool).reshape(-1)
    return base64.b64encode(np.packbits(arr, bitorder="little").tobytes()).decode("ascii")


def decode_mask(text: str, n: int) -> np.ndarray:
    """Inverse of encode_mask: a bool array of length n. Raises ValueError on a string that cannot be one."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, AttributeError) as e:
        raise ValueError(f"robust_mask is not base64 ({e})") from None
    n = int(n)
    if len(raw) != (n + 7) // 8:
        raise ValueError(f"robust_mask holds {len(raw)} bytes, {(n + 7) // 8} expected for n={n}")
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=n, bitorder="little").astype(bool)


# ------------------------------------------------------------------------------------------- records
@dataclass
class Records:
    """The valid records of one file in file order (each with `_line`), and where they came from."""

    path: Path
    all: list[dict[str, Any]]
    skipped: list[int] = field(default_factory=list)

    @property
    def records(self) -> list[dict[str, Any]]:
        """Alias of `all` (the evaluation runner reads it under this name)."""
        return self.all

    def latest(self) -> list[dict[str, Any]]:
        return latest_per_cell(self.all)


def records_path(results: str | Path) -> Path:
    """RESULTS may be a results folder (holding records.jsonl) or the path of a records file."""
    p = Path(results)
    if p.is_dir():
        p = p / RECORDS_FILE
        if not p.is_file():
            raise UserError(f"{results}: no {RECORDS_FILE} in this folder; pass a results folder written by "
                            f"'rocl-bench run' or the path of a records.jsonl file")
        return p
    if not p.exists():
        raise UserError(f"{results}: not found; pass a results folder or a records.jsonl file")
    return p


RECORDS_LIMIT = 1 << 30         # bytes: a records file of 1 GiB is ~500k cells; anything larger is not ours
TEXT = (str, type(None))
# The schema of a record, checked when a line is read: what reports and `run` read, with the type they need.
TEXT_FIELDS = ("label", "method", "source", "dataset", "arch", "split", "suite", "suite_hash", "test_indices_hash",
               "config_hash", "model_key", "robust_mask", "clean_mask", "encoder_method", "finetune_loss",
               "checkpoint_sha256", "timestamp", "device", "git_commit")
INT_FIELDS = ("n", "model_index", "attack_index", "seed", "world_size")
NUMBER_FIELDS = ("seconds", "peak_memory_mb", "train_seconds")
RUN_REQUIRED = ("clean_accuracy", "config_hash", "attack_spec")   # what `run` needs to reuse a finished cell


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_record(obj: Any) -> str | None:
    """Why this JSON value is not a usable record, or None: required fields, types, finite numbers, ranges."""
    if not isinstance(obj, dict):
        return f"a JSON {type(obj).__name__}, not an object"
    missing = [k for k in REQUIRED if obj.get(k) is None]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    for k in ("model", "attack"):
        if not isinstance(obj[k], str) or not obj[k]:
            return f"{k} is {_short(obj[k])}, not a non-empty string"
    for k in ("robust_accuracy", "clean_accuracy"):
        v = obj.get(k)
        if v is not None and (not _number(v) or not 0.0 <= v <= 1.0):
            return f"{k}={_short(v)} is not a fraction in [0, 1]"
    for k in TEXT_FIELDS:
        if not isinstance(obj.get(k), TEXT):
            return f"{k} is {_short(obj[k])}, not a string"
    for k in ("model", "attack", "label", "source", "method"):     # shown in tables: one line, nothing hidden
        odd = hidden_char(obj[k]) if isinstance(obj.get(k), str) else None
        if odd:
            return f"{k} holds a {odd}"
    for k in INT_FIELDS:
        v = obj.get(k)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < (1 if k == "n" else -2**63)
                              or v >= 2**64):
            return f"{k}={_short(v)} is not {'a positive' if k == 'n' else 'an'} integer"
    for k in NUMBER_FIELDS:
        v = obj.get(k)
        if v is not None and (not _number(v) or v < 0):
            return f"{k}={_short(v)} is not a finite number >= 0"
    if not isinstance(obj.get("seen"), (bool, type(None))):
        return f"seen is {_short(obj['seen'])}, not true or false"
    for k in ("flags", "warnings"):
        v = obj.get(k)
        if v is not None and (not isinstance(v, list) or not all(isinstance(x, str) for x in v)):
            return f"{k} is {_short(v)}, not a list of strings"
    spec = obj.get("attack_spec")
    if spec is not None:
        for part, inner in (("attack_spec", spec), ("attack_spec.crafted_with", (spec or {}).get("crafted_with")
                                                    if isinstance(spec, dict) else None)):
            if inner is None and part != "attack_spec":
                continue
            if not isinstance(inner, dict):
                return f"{part} is not an object"
            for k in ("type", "norm", "source"):
                if not isinstance(inner.get(k), TEXT):
                    return f"{part}.{k} is {_short(inner[k])}, not a string"
            eps = inner.get("eps")
            if eps is not None and (not _number(eps) or eps < 0):
                return f"{part}.eps={_short(eps)} is not a finite number >= 0"
    return None


def run_problem(rec: Mapping[str, Any]) -> str | None:
    """Why `run` cannot reuse this (otherwise valid) record as a finished cell, or None; such a cell is re-run."""
    missing = [k for k in RUN_REQUIRED if rec.get(k) is None]
    return f"missing field(s) {', '.join(missing)}" if missing else None


def _short(v: Any) -> str:
    return shown(v, 40)


def load_records(results: str | Path, warn: Warn | None = None, allow_empty: bool = False) -> Records:
    """All usable records in file order. Bad lines are reported through `warn` (default: stderr) and skipped.

    A file without any usable record is a UserError for reports; pass allow_empty=True to get an empty
    Records instead (e.g. when resuming a run whose first write was cut off)."""
    warn = warn or warn_stderr
    path = records_path(results)
    text = read_limited(path, RECORDS_LIMIT, "records.jsonl file").decode("utf-8", errors="replace")
    out: list[dict[str, Any]] = []
    skipped: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, parse_constant=refuse_json_constant)
        except ValueError as e:              # JSONDecodeError, NaN/Infinity, an integer of over 4300 digits
            skipped.append(number)
            if not isinstance(e, json.JSONDecodeError):
                warn(f"{path}:{number}: not a usable record ({str(e)[:100]}), line skipped")
                continue
            warn(f"{path}:{number}: not valid JSON ({e.msg} at column {e.colno}; truncated write?), line skipped")
            continue
        why = _check_record(obj)
        if why:
            skipped.append(number)
            warn(f"{path}:{number}: not a usable record ({why}), line skipped")
            continue
        obj["_line"] = number
        out.append(obj)
    if not out and not allow_empty:
        raise UserError(f"{path}: holds no usable records"
                        + (f" ({len(skipped)} bad line(s) skipped)" if skipped else " (the file is empty)")
                        + "; re-run the evaluation that writes it")
    return Records(path, out, skipped)


def cell_key(rec: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """(model, attack, source): source is only set for transfer cells."""
    return (str(rec["model"]), str(rec["attack"]), rec.get("source") or None)


def latest_per_cell(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The last record of each (model, attack[, source]) cell, sorted by model_index, attack_index, source."""
    last: dict[tuple, dict[str, Any]] = {}
    for rec in records:
        last[cell_key(rec)] = dict(rec)  # a later line replaces an earlier one
    return sorted(last.values(), key=lambda r: (_index(r, "model_index"), _index(r, "attack_index"),
                                                str(r.get("source") or "")))


def _index(rec: Mapping[str, Any], key: str) -> float:
    v = rec.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.inf


# ------------------------------------------------------------------------------------ threat models
def attack_type(rec: Mapping[str, Any]) -> str:
    spec = rec.get("attack_spec") or {}
    return str(spec.get("type") or ("clean" if rec.get("attack") == "clean" else "unknown")).lower()


def threat(rec: Mapping[str, Any]) -> tuple[str, str | None, float | None]:
    """(attack type, norm, eps) of a record; for transfer cells norm/eps come from `crafted_with`."""
    spec = rec.get("attack_spec") or {}
    kind = attack_type(rec)
    inner = spec.get("crafted_with") if kind == "transfer" and isinstance(spec.get("crafted_with"), dict) else spec
    norm = inner.get("norm")
    eps = inner.get("eps")
    norm = str(norm).lower() if norm is not None else None
    if norm in ("l_inf", "linfty", "inf"):
        norm = "linf"
    try:
        eps = float(eps) if eps is not None else None
    except (TypeError, ValueError):
        eps = None
    return kind, norm, eps


def same_eps(a: float | None, b: float | None) -> bool:
    """Budgets that are the same threat model: 8/255 and the 0.0314 written in many scripts match."""
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=2e-3, abs_tol=1e-9)


# ---------------------------------------------------------------------------------------------- names
def model_label(rec: Mapping[str, Any]) -> str:
    """The record's `label`, else a readable name derived from the method (see METHOD_NAMES)."""
    label = rec.get("label")
    if label:
        return str(label)
    method = str(rec.get("method") or "")
    if method in METHOD_NAMES:
        return METHOD_NAMES[method]
    model = str(rec.get("model") or "").lower()
    encoder = str(rec.get("encoder_method") or ("simclr" if "simclr" in model else "rocl" if "rocl" in model
                                                else "")).lower()
    base = METHOD_NAMES.get(encoder, encoder.upper() or "encoder")
    if method == "linear":
        return f"{base} + LE"
    if method == "robust-linear":
        return f"{base} + rLE"
    if method == "finetune":
        loss = str(rec.get("finetune_loss") or ("trades" if "trades" in model else "madry")).lower()
        return f"{base} + {'TRADES' if loss == 'trades' else 'AT'}"
    return str(rec.get("model"))


def eps_text(eps: float | None) -> str:
    """8/255 when eps is close to k/255 (and not a short decimal like 0.5 or 12), else a decimal."""
    if eps is None:
        return "?"
    if abs(eps - round(eps, 3)) < 1e-9:
        return f"{eps:g}"
    k = eps * 255
    if abs(k - round(k)) < 1e-3 * max(1.0, abs(k)) and round(k) != 0:
        return f"{int(round(k))}/255"
    return f"{eps:.4g}"


NORM_TEXT = {"linf": "ℓ∞", "l2": "ℓ2", "l1": "ℓ1"}
NORM_TEX = {"linf": r"$\ell_\infty$", "l2": r"$\ell_2$", "l1": r"$\ell_1$"}
NORM_ORDER = {"linf": 0, "l2": 1, "l1": 2}


def norm_text(norm: str | None) -> str:
    return NORM_TEXT.get(norm or "", str(norm))
