"""Typed configuration: YAML/CLI mappings are checked once, at the boundary, into frozen dataclasses."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar, get_args, get_origin

import yaml

from .errors import UserError, suggest

D = TypeVar("D")


def load_yaml(path: str | Path) -> Any:
    """Read YAML with safe_load only; a missing file or a syntax error becomes one clear line."""
    p = Path(path)
    try:
        is_file = p.is_file()
    except (OSError, ValueError) as e:        # a name too long, a NUL byte
        raise UserError(f"{p}: not a usable path ({e.__class__.__name__}); pass the path of a YAML file") from None
    if not is_file:
        what = "is a folder, not a file" if p.is_dir() else "file not found"
        raise UserError(f"{p}: {what}; pass the path of an existing YAML file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: cannot read ({e.__class__.__name__}); pass a readable UTF-8 YAML file") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or (str(e).splitlines() or ["?"])[0]
        fix = "fix the syntax there"
        if "python/" in str(e):
            fix = "remove the tag: YAML is read with safe_load, so python/* tags are refused"
        raise UserError(f"{p}:{where}: invalid YAML ({' '.join(str(problem).split())}); {fix}") from None
    except RecursionError:
        raise UserError(f"{p}: nested too deeply to read; flatten the YAML") from None


def shown(value: Any, limit: int = 80) -> str:
    """A user's value inside a one-line message: quoted, escaped when it holds control characters, shortened."""
    if isinstance(value, str):
        text = f"'{value}'" if value.isprintable() and "'" not in value else repr(value)
    else:
        text = repr(value)
        text = text if text.isprintable() else ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def segment(name: Any) -> str:
    """A user-chosen name (model, attack id) inside a key path such as `models.NAME.epochs`."""
    text = str(name)
    return text if text.isprintable() and 0 < len(text) <= 60 else shown(text, 60)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if origin in (list, tuple):
        return f"list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check (and gently convert, e.g. int -> float) one value against a type hint."""
    origin = get_origin(tp)
    bad = UserError(f"{where}: expected {_type_name(tp)}, got {shown(value)}")
    if tp is Any:
        return value
    if origin is Literal:
        if value not in get_args(tp):
            raise UserError(
                f"{where}: {shown(value)} is not allowed{suggest(str(value), map(str, get_args(tp)))}; "
                f"allowed: {', '.join(map(str, get_args(tp)))}"
            )
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, where)
            except UserError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise bad
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad
        (inner,) = get_args(tp)[:1]
        out = [coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise bad
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                try:
                    return _fraction(value, where)
                except UserError:
                    raise bad from None
            raise bad
        if not math.isfinite(float(value)):
            raise UserError(f"{where}: must be a finite number, got {shown(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where)
    raise TypeError(f"unsupported config type {tp!r} at {where}")


def _fraction(text: str, where: str) -> float:
    """Accept '8/255' for budgets, since that is how papers write them."""
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise UserError(f"{where}: expected a number or a fraction like 8/255, got {shown(text)}") from None


def from_mapping(cls: type[D], data: Any, where: str) -> D:
    """Build dataclass `cls` from a mapping; unknown keys get the closest valid name, types are checked."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise UserError(f"{where}: expected a mapping of fields, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise UserError(
                f"{where}: unknown key {shown(str(key))}{suggest(str(key), fields)}; valid keys: {', '.join(fields)}"
            )
        kwargs[key] = coerce(value, hints[key], f"{where}.{key}")
    missing = [n for n, f in fields.items() if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and n not in kwargs]
    if missing:
        raise UserError(f"{where}: missing required key '{missing[0]}'")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check:
        check(where)
    return obj


def to_dict(obj: Any) -> Any:
    """Plain JSON-able form of a config (for checkpoints, records and hashes)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def config_hash(obj: Any) -> str:
    """Stable short hash of a config, used to key checkpoints and records."""
    blob = json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def path_text(value: str, where: str) -> str:
    """A path written in a config: refuse what the OS cannot take (NUL bytes, absurd lengths) in one line."""
    if "\x00" in value or len(value) > 4096 or any(len(part) > 255 for part in value.split("/")):
        raise UserError(f"{where}: {value[:60]!r}{'...' if len(value) > 60 else ''} is not a usable path "
                        "(NUL byte or too long); write a plain file path")
    return value


def exists(path: Path) -> bool:
    """Path.exists that answers False instead of raising for names the OS refuses."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def require(cond: bool, where: str, message: str) -> None:
    """Raise a UserError naming the field when a value is out of range."""
    if not cond:
        raise UserError(f"{where}: {message}")
