"""``daemon/state.json``, Gas Town's daemon state, as the deacon keeper writes it.

``gt daemon status`` prints it (gastown.md §1.7): ``{"running","pid","started_at",
"last_heartbeat","heartbeat_count"}``, atomic (tmp+rename), indent 2, 0644. A mid-2026
``gt`` reports a town whose ``daemon.lock`` is held (our shared lock) as ``● Daemon is
running (PID 0)`` and adds the ``state.json`` lines when ``started_at`` is set
(gastown-2026.md §6.11); so the keeper writes it every pass and ``running: false`` when it
stops. ``daemon/daemon.pid`` is never written: ``gt down`` would SIGTERM that PID and
SIGKILL it 500 ms later, and a [J] ``gt`` deletes it unless its command line reads
``gt daemon run``. ``pid`` here is the keeper's own PID (nothing signals it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gastown_units.town.jsonfile import format_time, write_json_atomic
from gastown_units.town.layout import Town


def state_file(town: Town) -> Path:
    return town.daemon_dir / "state.json"


@dataclass
class DaemonState:
    """The keeper's beats, as Gas Town's daemon counts its heartbeats."""

    started_at: datetime
    heartbeat_count: int = 0

    def beat(self, town: Town, now: datetime | None = None) -> None:
        """One pass: count it and write the file (OSError to the caller)."""
        self.heartbeat_count += 1
        self._write(town, True, now or datetime.now(UTC))

    def stopped(self, town: Town, now: datetime | None = None) -> None:
        self._write(town, False, now or datetime.now(UTC))

    def _write(self, town: Town, running: bool, now: datetime) -> None:
        write_json_atomic(state_file(town), {
            "running": running, "pid": os.getpid(), "started_at": format_time(self.started_at),
            "last_heartbeat": format_time(now), "heartbeat_count": self.heartbeat_count,
        }, mode=0o644)
