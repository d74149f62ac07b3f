"""Per-agent restart backoff and crash-loop detection (Gas Town's later tracker, §7).

Backoff starts at ``base`` and doubles per restart up to ``cap``; ``loop_count`` restarts
within ``loop_window`` is a crash loop and restarts stop until ``gastown-units clear-backoff``;
an agent that stays up ``stable`` seconds after its last restart gets a clean slate.
State lives in ``daemon/restart_state.json`` in Gas Town's shape
(``{"agents": {id: {last_restart, restart_count, backoff_until, crash_loop_since}}}``,
plus our ``window_start``), keyed by tmux session name.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gastown_units.town.jsonfile import (
    format_time,
    parse_time,
    read_state_object,
    set_aside,
    write_json_atomic,
)

MAX_COUNT = 1000
DEACON_KEY = "deacon"  # Gas Town's own entry ([L] §6.10), not a session name


@dataclass
class Restarts:
    last_restart: float | None = None
    restart_count: int = 0
    backoff_until: float | None = None
    crash_loop_since: float | None = None
    window_start: float | None = None


@dataclass(frozen=True)
class Policy:
    base: float = 30.0
    cap: float = 600.0
    loop_count: int = 5
    loop_window: float = 900.0
    stable: float = 1800.0


def _ts(value: float | None) -> str:
    """The time for the file; a value no calendar can hold is written as unknown."""
    try:
        return format_time(datetime.fromtimestamp(value, UTC) if value is not None else None)
    except (OverflowError, OSError, ValueError):
        return format_time(None)


def stamp(value: float) -> str:
    """A time as the file keeps it (the same text before and after a save and a load)."""
    return _ts(value)


def _epoch(value: object) -> float | None:
    parsed = parse_time(value)
    return parsed.timestamp() if parsed else None


class RestartTracker:
    def __init__(self, path: Path, policy: Policy) -> None:
        self.path = path
        self.policy = policy
        self.agents: dict[str, Restarts] = {}
        self._loaded: set[str] = set()  # keys read by load(): ours to change or drop

    def load(self) -> None:
        """Read the file; a malformed one is set aside (one warning) and a fresh state used."""
        data = read_state_object(self.path)
        agents = data.get("agents", {})
        self.agents = {}
        self._loaded = set(agents) if isinstance(agents, dict) else set()
        if not isinstance(agents, dict):
            set_aside(self.path, "'agents' is not an object")
            return
        for key, entry in agents.items():
            if not isinstance(entry, dict):
                continue
            count = entry.get("restart_count")
            count = count if isinstance(count, int) and not isinstance(count, bool) else 0
            count = min(count, MAX_COUNT)  # 2**count must stay a float
            self.agents[str(key)] = Restarts(
                _epoch(entry.get("last_restart")), max(count, 0),
                _epoch(entry.get("backoff_until")), _epoch(entry.get("crash_loop_since")),
                _epoch(entry.get("window_start")))

    def save(self) -> None:
        """Write our entries, keeping every other key of the file. The ``deacon`` entry is
        Gas Town's ([L] §6.10: its four keys only) and the file stays 0600 once it is
        (Gas Town writes it 0600)."""
        try:
            current = read_state_object(self.path)
            mode = stat.S_IMODE(os.stat(self.path).st_mode)
        except (OSError, ValueError):
            current, mode = {}, 0o644
        theirs = current.get("agents")
        theirs = theirs if isinstance(theirs, dict) else {}
        # Written meanwhile by someone else (a new key, or Gas Town's deacon entry, which
        # deacon-keeper and `gt daemon clear-backoff` own): kept as the file has it now.
        agents: dict[str, Any] = {key: value for key, value in theirs.items()
                                  if key == DEACON_KEY or key not in self._loaded}
        for key, r in sorted(self.agents.items()):
            if key == DEACON_KEY:
                continue
            entry: dict[str, Any] = {
                "last_restart": _ts(r.last_restart), "restart_count": r.restart_count,
                "backoff_until": _ts(r.backoff_until),
                "crash_loop_since": _ts(r.crash_loop_since),
                "window_start": _ts(r.window_start)}
            agents[key] = entry
        data: dict[str, Any] = {**current, "agents": dict(sorted(agents.items()))}
        if data == current:
            return  # nothing changed: never rewrite a file another writer may change
        write_json_atomic(self.path, data, mode=0o600 if mode & 0o077 == 0 else 0o644)

    def blocked(self, key: str, now: float) -> str | None:
        """Why ``key`` may not be restarted now (crash loop or backoff), or None."""
        entry = self.agents.get(key)
        if entry is None:
            return None
        if entry.crash_loop_since is not None:
            return "crash loop"
        if entry.backoff_until is not None and now < entry.backoff_until:
            return f"backing off for {entry.backoff_until - now:.0f}s more"
        return None

    def before_server(self, key: str, server_started: float | None) -> bool:
        """Whether ``key``'s last booked restart came before the tmux server started: its
        session then ended with the old server (a reboot, a restart of the tmux host), not
        by a crash of its own. An unknown start time is no such evidence.

        >>> t = RestartTracker(Path("/nonexistent"), Policy())
        >>> t.record("gt-a", 100.0)
        >>> [t.before_server(key, at) for key, at in
        ...  [("gt-a", 150.0), ("gt-a", 50.0), ("gt-a", None), ("gt-b", 150.0)]]
        [True, False, False, False]
        """
        entry = self.agents.get(key)
        return (server_started is not None and entry is not None
                and entry.last_restart is not None and entry.last_restart < server_started)

    def backoff_ends(self, key: str, now: float) -> float | None:
        """When ``key``'s backoff ends, if it is backing off now (a crash loop never ends by
        itself: None)."""
        entry = self.agents.get(key)
        if entry is None or entry.crash_loop_since is not None or \
                entry.backoff_until is None or entry.backoff_until <= now:
            return None
        return entry.backoff_until

    def loop_since(self, key: str) -> float | None:
        """When ``key``'s crash loop began, or None when it is in none."""
        entry = self.agents.get(key)
        return entry.crash_loop_since if entry else None

    def loops_now(self, key: str, now: float) -> bool:
        """Mark a crash loop if the window already holds ``loop_count`` restarts."""
        entry = self.agents.get(key)
        if entry is None or entry.crash_loop_since is not None:
            return False
        in_window = entry.window_start is not None and \
            now - entry.window_start <= self.policy.loop_window
        if in_window and entry.restart_count >= self.policy.loop_count:
            entry.crash_loop_since = now
            return True
        return False

    def record(self, key: str, now: float) -> None:
        entry = self.agents.setdefault(key, Restarts())
        if entry.window_start is None or now - entry.window_start > self.policy.loop_window:
            entry.window_start, entry.restart_count = now, 0
        entry.restart_count += 1
        entry.last_restart = now
        delay = min(self.policy.base * 2.0 ** min(entry.restart_count - 1, 64), self.policy.cap)
        entry.backoff_until = now + delay

    def restarted_with_server(self, key: str, now: float) -> None:
        """Book a restart after the tmux server's end as no crash: its time is kept (a
        later death in this server's life is the polecat's own again), its count and
        backoff are not raised."""
        self.agents.setdefault(key, Restarts()).last_restart = now

    def stable(self, key: str, now: float) -> bool:
        """Forget an agent that has stayed up long enough; True if it was forgotten."""
        entry = self.agents.get(key)
        if entry is None or entry.crash_loop_since is not None:
            return False
        if entry.last_restart is not None and now - entry.last_restart >= self.policy.stable:
            del self.agents[key]
            return True
        return False

    def clear(self, key: str) -> bool:
        return self.agents.pop(key, None) is not None
