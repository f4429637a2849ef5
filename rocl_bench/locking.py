"""One writer per folder (a results folder, a training run's folder), safe against killed owners."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:          # Windows
    fcntl = None  # type: ignore[assignment]


Owner = tuple[int, int | None]       # (pid, start time in clock ticks since boot, where the OS tells it)


class FolderLock:
    """One writer per folder: a lock file naming its owner (pid and start time); a dead owner's lock is taken over.

    The lock is an exclusive `flock` on `.lock`, held for the whole run: the kernel drops it when its owner
    dies (even by SIGKILL), so a stale file is simply locked again, and two processes that race for a stale
    lock cannot both win. The file holds "PID START" (START from /proc/PID/stat), which names the owner in the
    refusal message; a pid that now belongs to another process (another start time) is recognised as stale. A
    lock file whose pid is alive but that nobody has flocked (written by hand, or by an older rocl-bench, without
    a start time) is still respected. Without `fcntl` (Windows) an O_EXCL create stands in, with the same check.
    A lock that cannot be written (full disk, read-only folder) is a one-line error and leaves no file.
    """

    def __init__(self, folder: Path, busy: str) -> None:
        self.path = folder / ".lock"
        self.busy = busy                 # the refusal, with {who} for the owner's pid
        self._fd: int | None = None

    def _refuse(self, owner: Owner | None) -> "Exception":
        from .errors import UserError

        who = f"pid {owner[0]}{_started(owner[1])}" if owner else "pid unknown"
        return UserError(f"{self.path.parent}: {self.busy.format(who=who)} (lock file {self.path}); wait for it "
                         "or pass another --out")

    def _unwritable(self, e: OSError) -> "Exception":
        from .errors import UserError

        return UserError(f"{self.path}: the lock file cannot be written ({e.strerror or e.__class__.__name__}); "
                         "nothing was changed; free some space or choose a writable --out")

    def __enter__(self) -> "FolderLock":
        if fcntl is None:
            return self._enter_exclusive_create()
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise self._unwritable(e) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise self._refuse(self._live_owner()) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:                      # its owner removed the file between our open and our flock
                os.close(fd)
                continue
            owner = self._read(fd)      # a live pid in an unlocked file (hand-written, older version): respect it
            if owner and owner[0] != os.getpid() and _alive(*owner):
                os.close(fd)
                raise self._refuse(owner)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, _me().encode(), 0)
            except OSError as e:              # ENOSPC, EDQUOT: we hold the flock, so the file is ours to remove
                self.path.unlink(missing_ok=True)
                os.close(fd)
                raise self._unwritable(e) from None
            self._fd = fd
            return self
        raise self._refuse(self._owner())

    def _enter_exclusive_create(self) -> "FolderLock":
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner and _alive(*owner):
                    raise self._refuse(owner) from None
                self.path.unlink(missing_ok=True)          # stale: its owner is gone
                continue
            except OSError as e:
                raise self._unwritable(e) from None
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(_me())
            except OSError as e:
                self.path.unlink(missing_ok=True)
                raise self._unwritable(e) from None
            return self
        raise self._refuse(self._owner())

    @staticmethod
    def _read(fd: int) -> Owner | None:
        try:
            return _parse(os.pread(fd, 64, 0).decode())
        except (OSError, UnicodeDecodeError):
            return None

    def _live_owner(self) -> Owner | None:
        """The holder; it writes itself just after taking the lock, so wait a moment for a stale pid to go."""
        for _ in range(50):
            owner = self._owner()
            if owner and _alive(*owner):
                return owner
            time.sleep(0.01)
        return None

    def _owner(self) -> Owner | None:
        try:
            return _parse(self.path.read_text())
        except (OSError, UnicodeDecodeError):
            return None

    def __exit__(self, *exc: Any) -> None:
        if self._fd is None:
            if fcntl is None and (self._owner() or (0, None))[0] == os.getpid():
                self.path.unlink(missing_ok=True)
            return
        try:
            self.path.unlink(missing_ok=True)           # still holding the flock: nobody else owns this file
        finally:
            os.close(self._fd)
            self._fd = None


def _parse(text: str) -> Owner | None:
    """"PID START" (or a bare "PID", as older versions wrote) -> (pid, start or None)."""
    parts = text.split()
    try:
        pid = int(parts[0]) if parts else 0
        start = int(parts[1]) if len(parts) > 1 else None
    except ValueError:
        return None
    return (pid, start) if pid > 0 else None


def _me() -> str:
    start = start_time(os.getpid())
    return f"{os.getpid()}" if start is None else f"{os.getpid()} {start}"


def start_time(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat); None off Linux."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        return int(text[text.rindex(")") + 2:].split()[19])     # fields after "(comm)" start at field 3
    except (OSError, ValueError, IndexError):
        return None


def _started(start: int | None) -> str:
    """', started 2025-06-01 12:00:03' from a start time in ticks since boot, or '' when unknown."""
    if start is None:
        return ""
    try:
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        when = boot + start / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, StopIteration, IndexError):
        return f", start time {start}"
    return ", started " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def _alive(pid: int, start: int | None = None) -> bool:
    """Is `pid` running, and (when `start` is known and the OS tells) is it still the process that started then?"""
    if pid <= 0:                                  # 0 and -1 would address process groups, not one process
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except PermissionError:
        pass
    now = start_time(pid) if start is not None else None
    return now is None or now == start           # another start time: the pid was reused, the lock is stale
