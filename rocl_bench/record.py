"""The evaluation record: one finished (model, attack[, source]) cell, and the file that holds them.

`rocl-bench run` writes one `Record` per cell to `records.jsonl` (one JSON object per line, append-only); every
report reads the file back through `load`, which validates each line and keeps the latest record per cell. This
module is the only place that knows the file's name, its fields and their types.

Schema versions: 0.1.0 wrote no `schema` field (read as schema 1, same fields); 0.2.0 writes `"schema": 2`. A
line that is not JSON, or fails validation (a missing or mistyped field, a non-finite number, an accuracy
outside [0, 1], a mask that does not decode to `n` points, distances that do not decode to `n` values >= 0),
is reported as "FILE:N: ..., line skipped" and
skipped: reports go on without it, and `run` evaluates its cell again. `distances` (minimum-norm cells) is an
optional field of schema 2: a reader without it keeps it among the unknown fields.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from .config import hidden_char, read_limited, refuse_json_constant, shown
from .errors import UserError
from .masks import decode_distances, decode_mask, encode_distances, encode_mask, same_eps  # noqa: F401 (re-exported)

SCHEMA = 2                      # what this version writes
OLDEST_SCHEMA = 1               # 0.1.0's records (no "schema" field)
RECORDS_FILE = "records.jsonl"
RECORDS_LIMIT = 1 << 30         # bytes: a records file of 1 GiB is ~500k cells; anything larger is not ours

Warn = Callable[[str], None]


class RecordError(ValueError):
    """A JSON object that is not a valid record; the message says why (shown as 'FILE:N: ..., line skipped')."""


def warn_stderr(message: str) -> None:
    print(f"rocl-bench: warning: {message}", file=sys.stderr)


# -------------------------------------------------------------------------------------------- record
@dataclass(frozen=True)
class Record:
    """One evaluated cell. Accuracies are fractions in [0, 1]; masks are `encode_mask` strings over the `n`
    test points (robust: survived the attack; clean: classified correctly without it)."""

    # the cell
    model: str
    attack: str
    robust_accuracy: float
    clean_accuracy: float | None = None
    source: str | None = None                  # the source model of a transfer cell, else None
    n: int | None = None
    robust_mask: str | None = None
    clean_mask: str | None = None
    distances: str | None = None               # a minimum-norm cell's per-point distances (distances.py)
    attack_spec: dict[str, Any] = field(default_factory=dict)   # the attack's describe()
    seen: bool = False                         # the attack's budget is the one the model was trained for
    label: str | None = None                   # the row name in tables (the runner writes `label or model`)
    method: str | None = None
    model_index: int | None = None             # order in the suite (table rows)
    attack_index: int | None = None            # order in the suite (columns); -1 for transfer cells
    # what it was evaluated on
    suite: str | None = None
    suite_hash: str | None = None
    dataset: str | None = None
    arch: str | None = None
    split: str | None = None
    test_indices_hash: str | None = None
    seed: int | None = None
    # identities: a finished cell is reused by `run` when its config_hash matches
    config_hash: str | None = None
    model_key: str | None = None
    checkpoint_sha256: str | None = None
    # provenance and cost
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    device: str | None = None
    world_size: int | None = None
    train_seconds: float | None = None
    seconds: float | None = None
    peak_memory_mb: float | None = None
    timestamp: str | None = None
    flags: tuple[str, ...] = ()                # the attack libraries' own warnings
    warnings: tuple[str, ...] = ()             # rocl-bench's alarms (bench/sanity.py)
    schema: int = SCHEMA
    extra: dict[str, Any] = field(default_factory=dict, compare=False)   # unknown fields, kept on re-write
    line: int | None = field(default=None, compare=False)               # line in the file it was read from

    # ----------------------------------------------------------------------------------- derived
    @property
    def cell(self) -> tuple[str, str, str | None]:
        """(model, attack, source): the key under which a later record replaces an earlier one."""
        return (self.model, self.attack, self.source)

    @property
    def name(self) -> str:
        """The row name: the label, else the model id (0.1.0 and later always wrote a label)."""
        return self.label or self.model

    @property
    def attack_type(self) -> str:
        """attack_spec.type, lower case ('clean' for the clean cell, 'unknown' when the spec names none)."""
        t = self.attack_spec.get("type")
        return str(t or ("clean" if self.attack == "clean" else "unknown")).lower()

    @property
    def threat(self) -> tuple[str, str | None, float | None]:
        """(attack type, norm, eps); a transfer cell's norm and eps are those of the attack it was crafted with."""
        kind = self.attack_type
        inner = self.attack_spec.get("crafted_with") if kind == "transfer" else None
        spec = inner if isinstance(inner, dict) else self.attack_spec
        norm, eps = spec.get("norm"), spec.get("eps")
        norm = str(norm).lower() if norm is not None else None
        if norm in ("l_inf", "linfty", "inf"):
            norm = "linf"
        return kind, norm, float(eps) if eps is not None else None

    def robust(self) -> np.ndarray:
        """The per-point robust mask (ValueError when the record has none)."""
        return self._mask("robust_mask")

    def clean_correct(self) -> np.ndarray:
        """The per-point clean-correct mask (ValueError when the record has none)."""
        return self._mask("clean_mask")

    def min_distances(self) -> np.ndarray:
        """A minimum-norm cell's per-point minimal distances (ValueError when the record has none)."""
        if not self.distances or self.n is None:
            raise ValueError("no distances")
        return decode_distances(self.distances, self.n)

    def _mask(self, key: str) -> np.ndarray:
        text = getattr(self, key)
        if not text or self.n is None:
            raise ValueError(f"no {key}")
        return decode_mask(text, self.n)

    def where(self) -> str:
        """How error messages name this record."""
        return f"record line {self.line if self.line is not None else '?'} ({self.model}/{self.attack})"

    # ----------------------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to records.jsonl (every field, nulls included; not `line`)."""
        out = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name not in ("extra", "line"):
                v = getattr(self, f.name)
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def to_json(self) -> str:
        """One line of records.jsonl (keys sorted, so equal records give equal bytes)."""
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def make(cls, **fields: Any) -> "Record":
        """A new record of this version (SCHEMA), checked like a record read back, so the runner cannot write
        what the readers would skip."""
        return cls.from_dict({**fields, "schema": SCHEMA})

    @classmethod
    def from_dict(cls, obj: Any, line: int | None = None) -> "Record":
        """Validate a decoded JSON object (any schema up to SCHEMA); RecordError says what is wrong."""
        if not isinstance(obj, dict):
            raise RecordError(f"a JSON {type(obj).__name__}, not an object")
        schema = obj.get("schema", OLDEST_SCHEMA)
        if not _int(schema) or schema < OLDEST_SCHEMA:
            raise RecordError(f"schema={_short(schema)} is not a record schema version")
        if schema > SCHEMA:
            raise RecordError(f"written with record schema {schema}, newer than this rocl-bench reads ({SCHEMA}); "
                              f"upgrade rocl-bench")
        missing = [k for k in ("model", "attack", "robust_accuracy") if obj.get(k) is None]
        if missing:
            raise RecordError(f"missing field(s) {', '.join(missing)}")
        known = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("extra", "line")}
        values: dict[str, Any] = {}
        for key, value in obj.items():
            if key in known and value is not None:
                values[key] = _CHECKS.get(key, _text)(key, value)
        if "source" in values and not values["source"]:
            del values["source"]                 # "" and null both mean: not a transfer cell
        values["schema"] = schema                # 0.1.0's records keep schema 1 in memory
        extra = {k: v for k, v in obj.items() if k not in known}
        rec = cls(**values, extra=extra, line=line)
        for key in ("robust_mask", "clean_mask"):
            if getattr(rec, key) is not None:
                if rec.n is None:
                    raise RecordError(f"{key} without n")
                try:
                    decode_mask(getattr(rec, key), rec.n)
                except ValueError as e:
                    raise RecordError(str(e).replace("robust_mask", key)) from None
        if rec.distances is not None:
            if rec.n is None:
                raise RecordError("distances without n")
            try:
                rec.min_distances()
            except ValueError as e:
                raise RecordError(str(e)) from None
        return rec

    @classmethod
    def from_json(cls, text: str, line: int | None = None) -> "Record":
        """Parse and validate one line of records.jsonl; RecordError (a ValueError) says what is wrong."""
        try:
            obj = json.loads(text, parse_constant=refuse_json_constant)
        except json.JSONDecodeError as e:
            raise RecordError(f"not valid JSON ({e.msg} at column {e.colno}; truncated write?)") from None
        except ValueError as e:         # NaN/Infinity, an integer of thousands of digits
            raise RecordError(f"not a usable record ({str(e)[:100]})") from None
        try:
            return cls.from_dict(obj, line)
        except RecordError as e:
            raise RecordError(f"not a usable record ({e})") from None


# ---------------------------------------------------------------------------------------- validation
def _short(v: Any) -> str:
    return shown(v, 40)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**63


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _text(key: str, v: Any) -> str:
    if not isinstance(v, str):
        raise RecordError(f"{key} is {_short(v)}, not a string")
    return v


def _name(key: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise RecordError(f"{key} is {_short(v)}, not a non-empty string")
    return _shown_text(key, v)


def _shown_text(key: str, v: Any) -> str:
    """A field tables print (label, source, method): text on one line with nothing hidden in it."""
    v = _text(key, v)
    odd = hidden_char(v)
    if odd:
        raise RecordError(f"{key} holds a {odd}")
    return v


def _fraction(key: str, v: Any) -> float:
    if not _number(v) or not 0.0 <= v <= 1.0:
        raise RecordError(f"{key}={_short(v)} is not a fraction in [0, 1]")
    return v


def _count(key: str, v: Any) -> int:
    if not _int(v) or v < (1 if key in ("n", "world_size") else -1):
        raise RecordError(f"{key}={_short(v)} is not {'a positive' if key in ('n', 'world_size') else 'an'} integer")
    return v


def _seed(key: str, v: Any) -> int:
    if not (isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**64):    # 64-bit seeds, either sign
        raise RecordError(f"{key}={_short(v)} is not an integer")
    return v


def _seconds(key: str, v: Any) -> float:
    if not _number(v) or v < 0:
        raise RecordError(f"{key}={_short(v)} is not a finite number >= 0")
    return v


def _flag(key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise RecordError(f"{key} is {_short(v)}, not true or false")
    return v


def _strings(key: str, v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise RecordError(f"{key} is {_short(v)}, not a list of strings")
    return tuple(v)


def _versions(key: str, v: Any) -> dict[str, str]:
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise RecordError(f"{key} is {_short(v)}, not an object of version strings")
    return v


def _spec(key: str, v: Any) -> dict[str, Any]:
    """attack_spec (and a transfer spec's crafted_with): an object whose type/norm are text and eps a number."""
    parts = [(key, v)]
    if isinstance(v, dict) and v.get("crafted_with") is not None:
        parts.append((f"{key}.crafted_with", v["crafted_with"]))
    for part, inner in parts:
        if not isinstance(inner, dict):
            raise RecordError(f"{part} is not an object")
        for k in ("type", "norm", "source"):
            if inner.get(k) is not None and not isinstance(inner[k], str):
                raise RecordError(f"{part}.{k} is {_short(inner[k])}, not a string")
        eps = inner.get("eps")
        if eps is not None and (not _number(eps) or eps < 0):
            raise RecordError(f"{part}.eps={_short(eps)} is not a finite number >= 0")
    return v


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "model": _name, "attack": _name, "robust_accuracy": _fraction, "clean_accuracy": _fraction,
    "n": _count, "model_index": _count, "attack_index": _count, "world_size": _count, "seed": _seed,
    "schema": _seed, "label": _shown_text, "source": _shown_text, "method": _shown_text, "seen": _flag, "flags": _strings, "warnings": _strings, "versions": _versions,
    "attack_spec": _spec, "train_seconds": _seconds, "seconds": _seconds, "peak_memory_mb": _seconds,
}


# ------------------------------------------------------------------------------------------ the file
@dataclass
class RecordFile:
    """The valid records of one file in file order, the line numbers skipped, and where they came from."""

    path: Path
    all: list[Record]
    skipped: list[int] = field(default_factory=list)

    def latest(self) -> list[Record]:
        """The latest record per cell, plus each minimum-norm cell read at its model's budgets (what every report
        shows: distances.with_budget_cells)."""
        from .distances import with_budget_cells

        return with_budget_cells(latest_per_cell(self.all))


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


def load(results: str | Path, warn: Warn | None = None, allow_empty: bool = False) -> RecordFile:
    """All valid records in file order. Bad lines are reported through `warn` (default: stderr) and skipped.

    A file without any valid record is a UserError for reports; pass allow_empty=True to get an empty
    RecordFile instead (e.g. when resuming a run whose first write was cut off)."""
    warn = warn or warn_stderr
    path = records_path(results)
    text = read_limited(path, RECORDS_LIMIT, "records.jsonl file").decode("utf-8", errors="replace")
    out: list[Record] = []
    skipped: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(Record.from_json(line, number))
        except RecordError as e:
            skipped.append(number)
            warn(f"{path}:{number}: {e}, line skipped")
    if not out and not allow_empty:
        raise UserError(f"{path}: holds no usable records"
                        + (f" ({len(skipped)} bad line(s) skipped)" if skipped else " (the file is empty)")
                        + "; re-run the evaluation that writes it")
    return RecordFile(path, out, skipped)


def append(folder: str | Path, record: Record) -> Path:
    """Add one record to FOLDER/records.jsonl. The whole file is rewritten to a temporary file and renamed, so a
    kill at any moment leaves either the old file or the new one, never a truncated line."""
    from .train.checkpoint import atomic_write_bytes   # torch-free reading: the writer is imported on use

    path = Path(folder) / RECORDS_FILE
    old = path.read_bytes() if path.exists() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    line = (record.to_json() + "\n").encode()
    atomic_write_bytes(path, lambda f: f.write(old + line))
    return path


def latest_per_cell(records: Iterable[Record]) -> list[Record]:
    """The last record of each (model, attack[, source]) cell, sorted by model_index, attack_index, source."""
    last: dict[tuple[str, str, str | None], Record] = {}
    for rec in records:
        last[rec.cell] = rec                     # a later line replaces an earlier one
    return sorted(last.values(), key=lambda r: (_index(r.model_index), _index(r.attack_index), r.source or ""))


def _index(v: int | None) -> float:
    return float(v) if v is not None else math.inf
