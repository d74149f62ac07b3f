"""[L] per-session heartbeats ``<town>/.runtime/heartbeats/<session>.json`` (2026 §1.5b).

Written by Gas Town (``gt`` commands of a polecat, ``gt done`` with state ``exiting``,
``gt heartbeat --state``); we only read them, never rewrite them (§8 row 25).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gastown_units.town.jsonfile import DamagedFile, parse_time, read_json_object
from gastown_units.town.layout import Town

STATES = frozenset({"working", "idle", "exiting", "stuck"})
QUIET_STATES = frozenset({"exiting", "idle"})  # a session that ends itself or rests


@dataclass(frozen=True)
class SessionHeartbeat:
    state: str = ""  # "" when there is no file or it cannot be read
    timestamp: float | None = None
    problem: str = ""  # why the file could not be read


def heartbeat_path(town: Town, session: str) -> Path:
    return town.root / ".runtime" / "heartbeats" / f"{session}.json"


def read_session_heartbeat(town: Town, session: str) -> SessionHeartbeat:
    """The session's heartbeat; a missing ``state`` means ``working`` (§1.5b). A damaged
    file reads as no heartbeat, with the problem (it never proves a quiet session)."""
    path = heartbeat_path(town, session)
    try:
        data = read_json_object(path)
    except (DamagedFile, OSError, ValueError, RecursionError) as exc:
        return SessionHeartbeat(problem=str(exc))
    if data is None:
        return SessionHeartbeat()
    raw = data.get("state")
    state = "working" if raw is None or raw == "" else raw
    if not isinstance(state, str) or state not in STATES:
        return SessionHeartbeat(problem=f"{path}: unknown state {raw!r}")
    when = parse_time(data.get("timestamp"))
    return SessionHeartbeat(state, when.timestamp() if when else None)
