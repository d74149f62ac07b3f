"""One actor per agent (design rule 9): a per-agent flock in the town.

Every service takes an agent's lock for any kill, start, restart or cleanup of that agent
and holds it for the whole sequence; a service that finds the lock taken leaves the agent
alone for this pass. The lock is an ``flock`` on ``daemon/agents/<session>.lock``, so the
kernel frees it when its holder dies: a supervisor killed mid-sequence blocks nobody.
The file says who holds it (PID, service, action), for the logs of those who skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from gastown_units.town.names import check_name


class AgentLocks:
    """The per-agent locks of one town, as taken by one service process."""

    def __init__(self, directory: Path, holder: str) -> None:
        self.directory = directory
        self.holder = holder
        self._held: dict[str, int] = {}  # session -> fd (re-entrant within the process)

    def path(self, session: str) -> Path:
        return self.directory / f"{check_name('session', session)}.lock"

    def holder_of(self, session: str) -> str:
        """Who holds the lock, as its file says ("" when unknown)."""
        try:
            return self.path(session).read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return ""

    def acquire(self, session: str, action: str) -> bool:
        """Take the agent's lock without waiting; False when another process holds it.

        An unusable lock directory raises OSError: the caller must not act unlocked.
        """
        if session in self._held:
            return True
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path(session), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError:
            os.close(fd)
            raise
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {self.holder} {action}\n".encode(), 0)
        self._held[session] = fd
        return True

    def release(self, session: str) -> None:
        fd = self._held.pop(session, None)
        if fd is not None:
            os.close(fd)  # closing the last descriptor drops the flock

    def release_all(self) -> None:
        for session in list(self._held):
            self.release(session)

    def held(self, session: str) -> bool:
        return session in self._held
