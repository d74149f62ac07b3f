"""The town-down mark: ``gt down`` leaves the town down (design rules 3 and 9).

While ``gt down`` runs (it flocks ``daemon/shutdown.lock``; [L] also names its PID in
``daemon/shutting-down``) no service acts. That alone would undo ``gt down`` a moment
later: the agents it stopped are missing, and missing agents are started again. So the
first service that sees a ``gt down`` at work, or sees its ``daemon/daemon.lock`` unlinked
([L] ``gt down``/``gt daemon stop``, gastown-2026.md §6.11), writes this mark (one file of
our own state, ``daemon/units/town-down.json``); while it exists no service starts,
restarts or kills any agent.

It is cleared by

- ``gt up``: the evidence is a Deacon session created after the mark (we start nothing
  while the town is down, so someone else did), seen for :data:`UP_SETTLE` seconds so that
  ``gt up`` finishes starting its agents before ours start the rest;
- ``gastown-units resume``;
- ``systemctl start gastown.target`` (gastown-resume.service runs ``gastown-units resume``).

An unreadable mark still holds (unknown is not "start"), until ``gastown-units resume``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gastown_units.town.jsonfile import format_time, parse_time, read_json, write_json_atomic
from gastown_units.town.layout import Town
from gastown_units.town.unit_state import state_path

log = logging.getLogger(__name__)

#: Seconds a Deacon session started by someone else must exist before it counts as
#: ``gt up`` being done (it starts the Deacon first, then the mayor and the rig agents).
UP_SETTLE = 5.0
RESUME_HOW = "gt up, `gastown-units resume` or `systemctl start gastown.target`"


@dataclass(frozen=True)
class TownDown:
    at: float
    reason: str
    by: str = ""
    readable: bool = True

    def when(self) -> str:
        try:
            return format_time(datetime.fromtimestamp(self.at, UTC))
        except (OverflowError, OSError, ValueError):
            return "an unknown time"

    def status(self) -> str:
        """The status line of every paused pass."""
        if not self.readable:
            return (f"town down (mark {self.reason}): no agent is started, restarted or "
                    "killed; resume with `gastown-units resume`")
        return (f"town down since {self.when()}: {self.reason}; no agent is started, "
                f"restarted or killed; resume with {RESUME_HOW}")


def down_path(town: Town) -> Path:
    return state_path(town, "town-down")


def read_down(town: Town) -> TownDown | None:
    """The mark, or None; a damaged one holds."""
    path = down_path(town)
    try:
        data = read_json(path)
    except (ValueError, OSError) as exc:
        return TownDown(float("inf"), f"{path} unreadable: {exc}", readable=False)
    if data is None:
        return None
    if not isinstance(data, dict):
        return TownDown(float("inf"), f"{path} is not a JSON object", readable=False)
    at = parse_time(data.get("at"))
    if at is None:
        return TownDown(float("inf"), f"{path} has no readable time", readable=False)
    return TownDown(at.timestamp(), str(data.get("reason") or "gt down"),
                    str(data.get("by") or ""))


def write_down(town: Town, reason: str, by: str) -> TownDown:
    """Mark the town down (an existing mark is kept: the first cause is the one told)."""
    existing = read_down(town)
    if existing is not None:
        return existing
    mark = TownDown(time.time(), reason, by)
    write_json_atomic(down_path(town), {
        "at": format_time(datetime.fromtimestamp(mark.at, UTC)), "reason": reason, "by": by,
        "resume": RESUME_HOW})
    return mark


def clear_down(town: Town) -> bool:
    """Remove the mark; True if there was one."""
    try:
        down_path(town).unlink()
    except FileNotFoundError:
        return False
    return True
