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
