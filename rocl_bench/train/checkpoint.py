"""One checkpoint format for every method: saved atomically, loaded with weights_only=True only."""
from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError

FORMAT_VERSION = 1


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, fsync, then rename: never a half-written file.

    The temporary file's name holds the writer's pid (.NAME.PID.XXXX.tmp), so the leftovers of a writer that
    was killed midway (SIGKILL, power loss) are removed by the next write of the same file."""
    path = Path(path)
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_dead_writers_leftovers(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(path, e, existed) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())         # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:                          # ENOSPC, EDQUOT, EIO, EROFS: the old file is untouched
        Path(tmp).unlink(missing_ok=True)
        raise write_error(path, e, existed) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_if_empty(*folders: Path) -> None:
    """After a failed first write (full disk, bad input), leave no empty folder behind; deepest first."""
    for folder in folders:
        try:
            folder.rmdir()                    # only ever removes an empty folder
        except OSError:
            return


def write_error(path: Path, e: OSError, existed: bool) -> UserError:
    """One line for a file we could not write (full disk, quota, read-only file system), naming what is kept."""
    import errno

    fix = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space (disk quota exceeded)",
           errno.EROFS: "the file system is read-only; choose a writable place"}.get(e.errno or 0,
                                                                                    "choose a writable place")
    kept = f"the previous {path.name} is unchanged" if existed else "nothing was written"
    return UserError(f"{path}: cannot be written ({e.strerror or e.__class__.__name__}); {kept}; {fix} and "
                     "rerun")


def _remove_dead_writers_leftovers(path: Path) -> None:
    prefix = f".{path.name}."
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or int(pid) <= 0 or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue                          # its writer is alive: not ours to touch
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError):
            continue
        try:
            os.unlink(path.parent / name)
        except OSError:
            pass


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Serialized in memory first: torch.save reports a full disk as an opaque RuntimeError, a plain write as
    the OSError it is (see atomic_write_bytes)."""
    payload = _canonical({"format_version": FORMAT_VERSION, **payload})
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(Path(path), lambda f: f.write(buf.getbuffer()))


def _canonical(obj: Any) -> Any:
    """The same content always pickles to the same bytes: pickle writes a string once and then refers back to
    it when the very same object recurs, so a history read back from last.pt (fresh string objects) and one
    built in memory (shared literals) would give different files. Strings are interned and containers rebuilt
    (dict subclasses such as a state_dict's OrderedDict keep their type and `_metadata`)."""
    if isinstance(obj, str):
        return sys.intern(str(obj))
    if isinstance(obj, dict):
        try:
            out = type(obj)() if type(obj) is not dict else {}
        except TypeError:                     # a dict subclass that needs arguments: keep the content
            out = {}
        for k, v in obj.items():
            out[_canonical(k)] = _canonical(v)
        for k, v in getattr(obj, "__dict__", {}).items():
            setattr(out, k, _canonical(v))
        return out
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    if isinstance(obj, tuple) and type(obj) is tuple:
        return tuple(_canonical(v) for v in obj)
    return obj


def load_checkpoint(path: str | Path, where: str = "checkpoint") -> dict[str, Any]:
    """Load a checkpoint or a plain state_dict; refuse anything that would need pickle to run code."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{where}: {p} not found; pass the path of a checkpoint.pt written by rocl-bench train")
    if p.stat().st_size == 0:
        raise UserError(f"{where}: {p} is empty; re-create it (e.g. rerun the training command)")
    try:
        with warnings.catch_warnings():       # e.g. "Detected pickle protocol 4": the refusal below says it all
            warnings.simplefilter("ignore")
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(f"{where}: {p} was refused: loading it would {_unpickling_detail(e)} (weights_only=True "
                        "accepts only tensors and plain containers); use a checkpoint written by rocl-bench "
                        "train or a plain state_dict") from None
    except Exception as e:        # a corrupt archive surfaces as RuntimeError, EOFError, IndexError, struct.error, ...
        text = (str(e).splitlines() or [""])[0][:120]
        raise UserError(f"{where}: {p} is not a readable checkpoint ({e.__class__.__name__}: "
                        f"{text}); it may be truncated, re-create it") from None
    if not isinstance(obj, dict):
        raise UserError(f"{where}: {p} holds a {type(obj).__name__}, not a checkpoint dict or a state_dict")
    if "format_version" in obj:
        version = obj["format_version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise UserError(f"{where}: {p} has an invalid format_version {version!r}; re-create it with "
                            "rocl-bench train")
        if version > FORMAT_VERSION:
            raise UserError(f"{where}: {p} has format {version}, newer than this rocl-bench "
                            f"understands ({FORMAT_VERSION}); upgrade rocl-bench")
        state = obj.get("state_dict")
        if not isinstance(state, dict) or not state or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
            raise UserError(f"{where}: {p} has no usable state_dict (a mapping of parameter names to tensors); "
                            "re-create it with rocl-bench train")
        return obj
    if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return {"format_version": 0, "state_dict": obj}
    raise UserError(f"{where}: {p} is neither a rocl-bench checkpoint nor a plain state_dict (names -> tensors)")


def _unpickling_detail(e: Exception) -> str:
    text = str(e)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"run code ({found.group(1)})"
    found = re.search(r"(Unsupported operand \d+|invalid load key[^\n.]*)", text)
    return f"need pickle features beyond plain data ({found.group(1) if found else 'not a torch.save file?'})"


def file_sha256(path: Path) -> str:
    """A checkpoint's identity is its content, so a moved or renamed file is still the same checkpoint."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
