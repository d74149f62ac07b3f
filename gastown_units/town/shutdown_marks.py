"""Shutdown markers: an agent shut down on request stays down (design rule 9).

Whoever shuts an agent down (a Witness LIFECYCLE shutdown, a ``deacon/`` shutdown request)
writes ``daemon/shutdowns/<session>.json`` *before* the kill. Keepers and the polecat sweep
honour it: they do not bring the agent back while it holds. It stops holding when

- a session of that name exists that was created after the marker (someone started the
  agent deliberately: ``gt sling`` of a reused polecat name, ``gt … start``, a human), or
- for a polecat, new work was hooked after the shutdown (another ``hook_bead`` than the
  one recorded, or, when that was unknown, an agent bead updated after the marker), or
- a LIFECYCLE cycle/restart of the agent or ``gastown-units clear-backoff`` clears it.

A marker file that cannot be read still holds: unknown is not "restart".
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gastown_units.town.jsonfile import format_time, parse_time, read_json, write_json_atomic
from gastown_units.town.layout import Town
from gastown_units.town.names import check_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShutdownMark:
    """One agent's shutdown: when, by whom, which work was hooked then, which request."""

    session: str
    at: float
    by: str = ""
    hook_bead: str | None = None  # None: not known when the agent was shut down
    request: str = ""
    readable: bool = True

    def holds(self, *, session_created: float | None = None, hook_bead: str | None = None,
              bead_updated: float | None = None) -> bool:
        """Does the marker still keep the agent down, given what is seen now?"""
        if session_created is not None and session_created > self.at:
            return False
        if not self.readable:
            return True
        if hook_bead:
            if self.hook_bead is not None:
                return hook_bead == self.hook_bead
            return bead_updated is None or bead_updated <= self.at
        return True

    def describe(self) -> str:
        try:
            when = format_time(datetime.fromtimestamp(self.at, UTC))
        except (OverflowError, OSError, ValueError):  # an unreadable marker has no time
            when = "an unknown time"
        by = f" by {self.by}" if self.by else ""
        return f"shut down on request{by} at {when}"


def marks_dir(town: Town) -> Path:
    return town.daemon_dir / "shutdowns"


def mark_path(town: Town, session: str) -> Path:
    return marks_dir(town) / f"{check_name('session', session)}.json"


def write_mark(town: Town, session: str, *, by: str, hook_bead: str | None,
               request: str = "") -> ShutdownMark:
    """Record the shutdown of ``session`` (raises OSError: then do not kill)."""
    mark = ShutdownMark(session, time.time(), by, hook_bead, request)
    write_json_atomic(mark_path(town, session), {
        "session": session, "at": format_time(datetime.fromtimestamp(mark.at, UTC)),
        "by": by, "hook_bead": hook_bead, "request": request})
    return mark


def read_mark(town: Town, session: str) -> ShutdownMark | None:
    """The marker of ``session``, or None; an unreadable one is returned as holding."""
    path = mark_path(town, session)
    try:
        data = read_json(path)
    except (ValueError, OSError) as exc:
        log.warning("shutdown marker %s unreadable (%s): %s is kept down until the marker "
                    "is removed (gastown-units clear-backoff)", path, exc, session)
        return ShutdownMark(session, float("inf"), readable=False)
    if data is None:
        return None
    if not isinstance(data, dict):
        return ShutdownMark(session, float("inf"), readable=False)
    at = parse_time(data.get("at"))
    hook = data.get("hook_bead")
    return ShutdownMark(session, at.timestamp() if at else float("inf"),
                        str(data.get("by") or ""), hook if isinstance(hook, str) else None,
                        str(data.get("request") or ""), readable=at is not None)


def clear_mark(town: Town, session: str) -> bool:
    """Remove the marker; True if there was one."""
    try:
        mark_path(town, session).unlink()
    except FileNotFoundError:
        return False
    return True
