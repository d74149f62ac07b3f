"""Agents an operator holds: never started, restarted or killed by any service.

``gastown-units hold AGENT`` writes ``daemon/holds/<session>.json``; ``release`` removes
it. One file per agent, written atomically by the command and only read by the services,
so no two writers meet. A hold file that exists but cannot be read still holds: the
services never act on missing or unreadable information.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gastown_units.town.jsonfile import DamagedFile, read_json_object, write_json_atomic
from gastown_units.town.layout import Town
from gastown_units.town.names import check_name

HOLDS_DIR = "holds"


@dataclass(frozen=True)
class Hold:
    session: str
    by: str  # who held it (the operator's user name)
    since: float | None  # epoch seconds; None when the file is unreadable
    reason: str
    damaged: str = ""  # why the file could not be read (it still holds)

    @property
    def since_text(self) -> str:
        """``since`` as UTC ISO time, or ``?`` when unknown."""
        if self.since is None:
            return "?"
        return datetime.fromtimestamp(self.since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    def describe(self) -> str:
        """One line: ``held by alice since 2026-12-02 01:50:00 UTC (reason: …)``."""
        if self.damaged:
            return f"held (hold file unreadable, counted as held: {self.damaged})"
        reason = f" (reason: {self.reason})" if self.reason else ""
        return f"held by {self.by} since {self.since_text}{reason}"

    @property
    def incident(self) -> str:
        """What identifies this hold in logs-once bookkeeping (a new hold: a new incident)."""
        return f"{self.by}|{self.since}|{self.damaged}"


def holds_dir(town: Town) -> Path:
    return town.daemon_dir / HOLDS_DIR


def hold_path(town: Town, session: str) -> Path:
    """The hold file of a tmux session name (checked: it becomes a file name)."""
    return holds_dir(town) / f"{check_name('session', session)}.json"


def read_hold(town: Town, session: str) -> Hold | None:
    """The hold of ``session``, or None when it is not held."""
    path = hold_path(town, session)
    try:
        data = read_json_object(path)
    except DamagedFile as exc:
        return Hold(session, "?", None, "", damaged=exc.why)
    if data is None:
        return None
    since = data.get("since")
    return Hold(session, str(data.get("by", "?"))[:64],
                float(since) if isinstance(since, int | float) and not isinstance(since, bool)
                and 0 <= since < 1e11 else None,
                str(data.get("reason", ""))[:500])


def is_held(town: Town, session: str) -> bool:
    return read_hold(town, session) is not None


def all_holds(town: Town) -> dict[str, Hold]:
    """Every held session (an unlistable directory: nothing is known to be held)."""
    try:
        names = sorted(p.name for p in holds_dir(town).iterdir() if p.name.endswith(".json"))
    except OSError:
        return {}
    found: dict[str, Hold] = {}
    for name in names:
        session = name.removesuffix(".json")
        try:
            hold = read_hold(town, session)
        except ValueError:  # a file whose name is no session name: not ours
            continue
        if hold is not None:
            found[session] = hold
    return found


def write_hold(town: Town, session: str, by: str, reason: str = "",
               now: float | None = None) -> Hold:
    hold = Hold(session, by, time.time() if now is None else now, reason)
    write_json_atomic(hold_path(town, session),
                      {"session": session, "by": by, "since": hold.since, "reason": reason})
    return hold


def remove_hold(town: Town, session: str) -> bool:
    """Release ``session``; True if it was held."""
    path = hold_path(town, session)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
