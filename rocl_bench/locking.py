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


class FolderLock:
    """One writer per folder: a lock file holding the owner's pid; a dead owner's lock is taken over.

    The lock is an exclusive `flock` on `.lock`, held for the whole run: the kernel drops it when its owner
    dies (even by SIGKILL), so a stale file is simply locked again, and two processes that race for a stale
    lock cannot both win. The pid in the file only names the owner in the refusal message. A lock file whose
    pid is alive but that nobody has flocked (written by hand, or by an older rocl-bench) is still respected.
    Without `fcntl` (Windows) an O_EXCL create stands in, with the same pid check.
    """

    def __init__(self, folder: Path, busy: str) -> None:
        self.path = folder / ".lock"
        self.busy = busy                 # the refusal, with {who} for the owner's pid
        self._fd: int | None = None

    def _refuse(self, owner: int | None) -> "Exception":
        from .errors import UserError

        who = f"pid {owner}" if owner else "pid unknown"
        return UserError(f"{self.path.parent}: {self.busy.format(who=who)} (lock file {self.path}); wait for it "
                         "or pass another --out")

    def __enter__(self) -> "FolderLock":
        if fcntl is None:
            return self._enter_exclusive_create()
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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
            if owner and owner != os.getpid() and _alive(owner):
                os.close(fd)
                raise self._refuse(owner)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            self._fd = fd
            return self
        raise self._refuse(self._owner())

    def _enter_exclusive_create(self) -> "FolderLock":
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner and _alive(owner):
                    raise self._refuse(owner) from None
                self.path.unlink(missing_ok=True)          # stale: its owner is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise self._refuse(self._owner())

    @staticmethod
    def _read(fd: int) -> int | None:
        try:
            return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
        except (OSError, ValueError, UnicodeDecodeError):
            return None

    def _live_owner(self) -> int | None:
        """The holder's pid; it writes it just after taking the lock, so wait a moment for a stale pid to go."""
        for _ in range(50):
            owner = self._owner()
            if owner and _alive(owner):
                return owner
            time.sleep(0.01)
        return None

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or 0) or None
        except (OSError, ValueError, UnicodeDecodeError):
            return None

    def __exit__(self, *exc: Any) -> None:
        if self._fd is None:
            if fcntl is None and self._owner() == os.getpid():
                self.path.unlink(missing_ok=True)
            return
        try:
            self.path.unlink(missing_ok=True)           # still holding the flock: nobody else owns this file
        finally:
            os.close(self._fd)
            self._fd = None


def _alive(pid: int) -> bool:
    if pid <= 0:                                  # 0 and -1 would address process groups, not one process
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except PermissionError:
        return True
    return True
