"""The town's lock files (contract §1.7, design rule 7).

``gt daemon run`` holds an exclusive flock on ``daemon/daemon.lock``; our services hold a
*shared* one, so that neither can run beside the other while ours run beside each other.
``gt down`` flocks ``daemon/shutdown.lock``; we test the flock, not the file's existence
(the file is never deleted).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from gastown_units.errors import LockConflict, TownError


class TownLock:
    """A shared flock on ``daemon/daemon.lock`` held for the life of the service."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise TownError(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockConflict(
                f"{self.path} is locked exclusively: `gt daemon` is running for this town; "
                "stop it (gt daemon stop) — one supervisor per town"
            ) from None
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def check(self) -> str | None:
        """Is the lock still on the file at ``path``? Every pass asks.

        ``gt down`` and ``gt daemon stop`` of a mid-2026 town unlink ``daemon.lock`` when
        it is held without a ``daemon.pid`` (gastown-2026.md §6.11); a lock on an unlinked
        inode keeps nobody out, and the next ``gt up`` would start a real daemon beside us.
        So: compare the inode and device of our descriptor with the path; when they differ,
        take a shared lock on the file now at the path (creating it when it is gone).

        Returns None (still ours), ``"unlinked"`` or ``"replaced"`` (re-taken); raises
        LockConflict when a ``gt daemon`` holds the new file exclusively, TownError when
        the file cannot be opened again. An unanswered ``stat`` is "unknown": kept.
        """
        if self._fd is None:
            raise TownError(f"{self.path}: the town lock is not held")
        held = os.fstat(self._fd)
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            what = "unlinked"
        except OSError:
            return None
        else:
            if (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev):
                return None
            what = "replaced"
        self.release()
        try:
            self.acquire()
        except LockConflict:
            raise LockConflict(
                f"{self.path} was {what}, and a `gt daemon` now holds the new file "
                "exclusively: it supervises the town, so this service stops acting (stop "
                "it, `gt daemon stop`, then restart the units — one supervisor per town)"
            ) from None
        return what

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> TownLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def shutdown_in_progress(path: Path) -> bool:
    """True while someone (``gt down``) holds a flock on ``daemon/shutdown.lock``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def shutting_down_pid(path: Path) -> int | None:
    """The PID in ``daemon/shutting-down`` ([L] ``gt down`` writes its own PID there and
    removes it at its end, gastown-2026.md §1.2) when that process is alive, else None
    (no file, unreadable, or a stale PID)."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")[:32].strip()
    except OSError:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) <= 0:
        return None
    pid = int(text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    except OverflowError:
        return None
    return pid


def flock_holders(path: Path, kind: str = "READ", locks: str | None = None) -> list[int]:
    """PIDs holding a ``flock`` of ``kind`` (``READ`` = shared, ``WRITE`` = exclusive) on
    ``path``, from ``/proc/locks``: the holders that have ``path`` open (inode numbers
    alone are not comparable across an overlay). Unknown (unreadable) is ``[]``."""
    if locks is None:
        try:
            locks = Path("/proc/locks").read_text(encoding="utf-8")
        except OSError:
            return []
    target = os.path.realpath(path)
    holders: list[int] = []
    for line in locks.splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[1:4] != ["FLOCK", "ADVISORY", kind]:
            continue
        if not fields[4].isdigit() or int(fields[4]) in holders:
            continue
        pid = int(fields[4])
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    holders.append(pid)
                    break
            except OSError:
                continue
    return holders
