"""Typed configuration: YAML/CLI mappings are checked once, at the boundary, into frozen dataclasses."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import stat
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar, get_args, get_origin

import yaml

from .errors import UserError, suggest

D = TypeVar("D")


YAML_LIMIT = 16 * 2**20          # bytes: a suite or a training config is a few KiB
YAML_NODES = 100_000             # values after alias expansion: refuses "billion laughs" documents in O(file size)
SEED_RANGE = (-(2**63), 2**64 - 1)   # what torch.manual_seed takes: the seed must fit in 64 bits


def _kind_of(mode: int) -> str:
    return ("a pipe (FIFO)" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a folder" if stat.S_ISDIR(mode) else "not a regular file")


def read_limited(path: str | Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, or one clear line: a missing file, a folder, a FIFO
    or a device (/dev/zero, a piped /dev/stdin) or an oversized file is refused without reading (or blocking on)
    more than `limit` bytes. `what` names the expected file, e.g. 'a YAML file'."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))    # O_NONBLOCK: a FIFO without writer
    except FileNotFoundError:
        raise UserError(f"{p}: file not found; pass the path of an existing {what}") from None
    except IsADirectoryError:
        raise UserError(f"{p}: is a folder, not a file; pass the path of an existing {what}") from None
    except (OSError, ValueError) as e:        # a name too long, a NUL byte, no permission
        detail = getattr(e, "strerror", None) or e.__class__.__name__
        raise UserError(f"{p}: cannot be opened ({detail}); pass the path of a readable {what}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise UserError(f"{p}: is a folder, not a file; pass the path of an existing {what}")
        if not stat.S_ISREG(mode):
            raise UserError(f"{p}: is {_kind_of(mode)}, not a regular file; save the content to a file and pass "
                            f"its path ({what})")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise UserError(f"{p}: cannot be read ({e.strerror or e.__class__.__name__}); pass a readable "
                        f"{what}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UserError(f"{p}: larger than {limit // 2**20} MiB, too large for a {what}; pass the right file")
    return data


class _Loader(yaml.SafeLoader):
    """safe_load that refuses duplicate keys (naming both lines) and documents whose aliases expand past
    YAML_NODES values, both checked on the node graph before any Python object is built."""


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _check_nodes(root: yaml.Node, loader: _Loader, where: str) -> None:
    """One pass over the node graph (each node once, however many aliases point at it): expanded sizes, cycles
    and duplicate keys."""
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            if size[key] > YAML_NODES:
                raise UserError(f"{where}: line {_line(node)}: aliases expand this value to more than {YAML_NODES} "
                                "values; write the values out instead of nesting aliases")
            continue
        if key in size:
            continue
        if key in open_:
            raise UserError(f"{where}: line {_line(node)}: an alias refers to the value that holds it (a cycle); "
                            "write the value out")
        open_.add(key)
        stack.append((node, True))
        if isinstance(node, yaml.MappingNode):
            _check_duplicates(node, loader, where)
        stack.extend((k, False) for k in _children(node) if id(k) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_duplicates(node: yaml.MappingNode, loader: _Loader, where: str) -> None:
    seen: dict[Any, yaml.Node] = {}
    for k, _ in node.value:
        if not isinstance(k, yaml.ScalarNode) or k.tag == "tag:yaml.org,2002:merge":
            continue
        try:
            value = loader.construct_object(k)       # so `1` and `0x1`, `yes` and `true` are the same key
            hash(value)
        except Exception:                           # construct_document reports it
            continue
        ident = (type(value).__name__, value)
        if ident in seen:
            raise UserError(f"{where}: line {_line(k)}: duplicate key {shown(k.value)} (first given on line "
                            f"{_line(seen[ident])}); keep one of them")
        seen[ident] = k


def load_yaml(path: str | Path) -> Any:
    """Read YAML with safe_load only; a missing file, a syntax error, a duplicate key or an alias bomb becomes
    one clear line (see read_limited, _check_nodes)."""
    p = Path(path)
    raw = read_limited(p, YAML_LIMIT, "YAML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{p}: cannot read ({e.__class__.__name__}); pass a readable UTF-8 YAML file") from None
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_nodes(node, loader, str(p))
            return loader.construct_document(node)
        finally:
            loader.dispose()
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
    except ValueError as e:           # e.g. an integer of more than 4300 digits
        raise UserError(f"{p}: a value cannot be read ({shown(str(e), 100)}); shorten it") from None


class NonFiniteJSON(ValueError):
    """JSON's NaN / Infinity / -Infinity: no file we read may hold them (an accuracy or tolerance of that value
    would compare as never moved)."""


def refuse_json_constant(name: str) -> Any:
    """`parse_constant` for json.loads: refuse NaN and the infinities instead of reading them as floats."""
    raise NonFiniteJSON(f"{name} is not a number this file may hold")


def shown(value: Any, limit: int = 80) -> str:
    """A user's value inside a one-line message: quoted, escaped when it holds control characters, shortened.
    Work is bounded by `limit`, never by the value's size (an alias-expanded tree, a huge integer)."""
    if isinstance(value, str):
        value = value[: limit + 2]
        text = f"'{value}'" if value.isprintable() and "'" not in value else repr(value)
    else:
        text = _bounded_repr(value, limit + 1)
        text = text if text.isprintable() else text.encode("ascii", "backslashreplace").decode()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bounded_repr(value: Any, budget: int) -> str:
    """repr() that stops after about `budget` characters (containers are walked only that far)."""
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        brackets = {list: "[]", tuple: "()", dict: "{}"}.get(type(value), "{}")
        items = value.items() if isinstance(value, dict) else value
        parts: list[str] = []
        used = 1
        for item in items:
            if used > budget:
                parts.append("...")
                break
            if isinstance(value, dict):
                k, v = item
                part = f"{_bounded_repr(k, budget - used)}: {_bounded_repr(v, budget - used)}"
            else:
                part = _bounded_repr(item, budget - used)
            parts.append(part)
            used += len(part) + 2
        return brackets[0] + ", ".join(parts) + brackets[1]
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"<an integer of {len(str(value)) if value.bit_length() < 10_000 else 'thousands of'} digits>"
    if isinstance(value, (str, bytes)):
        return repr(value[: budget + 2])
    return repr(value)[: budget + 2]


def segment(name: Any) -> str:
    """A user-chosen name (model, attack id) inside a key path such as `models.NAME.epochs`."""
    text = str(name)
    return text if text.isprintable() and 0 < len(text) <= 60 else shown(text, 60)


NAME_BYTES = 255        # the longest file name most file systems take, in bytes


def hidden_char(text: str) -> str | None:
    """'control or invisible character U+XXXX' for the first character that would break or disguise a one-line
    message or table (newlines, bidi overrides such as U+202E, zero-width characters), else None."""
    import unicodedata

    odd = next((c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")), None)
    return None if odd is None else f"control or invisible character U+{ord(odd):04X}"


def unsafe_name(name: str) -> str | None:
    """Why `name` (a suite, model or attack name, used in file names and one-line tables) is not a safe path
    component, or None: path separators, '.'/'..', control or invisible/bidi characters (U+202E would reverse
    the text shown around it), or more than NAME_BYTES bytes in UTF-8."""
    if not name:
        return "it is empty"
    if name in (".", ".."):
        return f"'{name}' names a folder"
    if "/" in name or "\\" in name:
        return "it holds a path separator ('/' or '\\')"
    odd = hidden_char(name)
    if odd:
        return f"it holds the {odd}"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > NAME_BYTES:
        return f"it is {size} bytes in UTF-8, more than the {NAME_BYTES} a file name may have"
    return None


def safe_name(value: Any, where: str) -> str:
    """A name checked once as a path component (see unsafe_name); one line naming the key otherwise."""
    text = coerce(value, str, where) if not isinstance(value, str) else value
    why = unsafe_name(text)
    if why:
        raise UserError(f"{where}: {shown(text, 60)} is not a usable name ({why}); use a plain file name without "
                        "'/', such as letters, digits, '-' and '_'")
    return text


def inside(root: Path, path: Path, where: str) -> Path:
    """`path`, after checking that it resolves to a place inside `root` (symlinks followed): nothing we write
    may land outside the output folder."""
    base, target = Path(root).resolve(), Path(path).resolve()
    if target != base and base not in target.parents:
        raise UserError(f"{where}: {path} resolves to {target}, outside the output folder {base}; "
                        "rename it or pass another --out")
    return Path(path)


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


def check_seed(seed: int, where: str) -> int:
    """Seeds go to torch.manual_seed, which takes 64 bits: a larger one is a one-line error, not an Overflow."""
    lo, hi = SEED_RANGE
    require(lo <= seed <= hi, where, f"must fit in 64 bits (between -2**63 and 2**64-1), got {shown(seed, 40)}")
    return seed


def require(cond: bool, where: str, message: str) -> None:
    """Raise a UserError naming the field when a value is out of range."""
    if not cond:
        raise UserError(f"{where}: {message}")
