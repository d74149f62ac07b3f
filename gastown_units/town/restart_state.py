"""[L] ``daemon/restart_state.json``, the ``deacon`` entry (gastown-2026.md §6.10).

``{"agents": {"deacon": {"last_restart", "restart_count", "backoff_until",
"crash_loop_since"}}}``, indented 2 spaces, mode 0600, zero times ``0001-01-01T00:00:00Z``.
Gas Town's daemon and ``gt daemon clear-backoff deacon`` write it; a crash loop stops every
restart (and heartbeat kill) of the Deacon until that command clears it.

Every write keeps whatever else the file holds (other agents, other keys).

The tracker's settings are Gas Town's defaults unless ``mayor/daemon.json``
``patrols.restart_tracker`` sets them (§6.10: durations in nanoseconds, a float
multiplier, an int count; a value ≤ 0 means the default). ``crash_loop_window`` is read
by Gas Town but its test always passes, and ``pause_backoff`` belongs to usage-limit
pauses, which no supervisor here makes: both are accepted and have no effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gastown_units.town.jsonfile import (
    DamagedFile,
    format_time,
    parse_time,
    read_json_object,
    write_json_atomic,
)

DEACON_KEY = "deacon"
CLEAR_COMMAND = "gt daemon clear-backoff deacon"
MODE = 0o600
NS = 1e9
INT64_MAX = 2**63 - 1  # a Go time.Duration or int
MAX_EXPONENT = 64  # beyond it every backoff is the cap


@dataclass(frozen=True)
class TrackerPolicy:
    """The Deacon's restart tracker settings, in seconds (§6.10 defaults)."""

    initial: float = 30.0
    cap: float = 600.0
    multiplier: float = 2.0
    loop_count: int = 5
    stable: float = 1800.0

    def backoff(self, count: int) -> float:
        """The backoff after the ``count``-th restart: initial × multiplier^(count−1),
        at most the cap."""
        try:
            value = self.initial * self.multiplier ** min(max(count - 1, 0), MAX_EXPONENT)
        except OverflowError:
            return self.cap
        return min(value, self.cap)


# daemon.json key -> (field, kind): "ns" a Go duration, "float", "int"
_SETTINGS = {"initial_backoff": ("initial", "ns"), "max_backoff": ("cap", "ns"),
             "backoff_multiplier": ("multiplier", "float"),
             "crash_loop_window": ("", "ns"), "crash_loop_count": ("loop_count", "int"),
             "stability_period": ("stable", "ns"), "pause_backoff": ("", "ns")}


def tracker_policy(daemon_json: dict[str, Any] | None) -> tuple[TrackerPolicy, list[str]]:
    """The settings ``patrols.restart_tracker`` of a read ``mayor/daemon.json`` gives, and
    the problems with it (each unusable value falls back to its default and is named).

    >>> policy, problems = tracker_policy({"patrols": {"restart_tracker": {
    ...     "initial_backoff": 2000000000, "backoff_multiplier": 1.5,
    ...     "crash_loop_count": 0, "max_backoff": "10m"}}})
    >>> policy
    TrackerPolicy(initial=2.0, cap=600.0, multiplier=1.5, loop_count=5, stable=1800.0)
    >>> print(*problems)
    patrols.restart_tracker.max_backoff must be a whole number of nanoseconds, not '10m'
    """
    patrols = (daemon_json or {}).get("patrols")
    section = patrols.get("restart_tracker") if isinstance(patrols, dict) else None
    if section is None:
        return TrackerPolicy(), []
    where = "patrols.restart_tracker"
    if not isinstance(section, dict):
        return TrackerPolicy(), [f"{where} must be an object"]
    policy = TrackerPolicy()
    problems: list[str] = []
    for key, (name, kind) in _SETTINGS.items():
        raw = section.get(key)
        if raw is None:
            continue
        value = _setting(raw, kind)
        if value is None:
            problems.append(f"{where}.{key} must be {_KINDS[kind]}, not {raw!r}")
        elif name and value > 0:  # ≤ 0: the default
            changed: dict[str, Any] = {name: value / NS if kind == "ns" else value}
            policy = replace(policy, **changed)
    return policy, problems


_KINDS = {"ns": "a whole number of nanoseconds", "float": "a number", "int": "a whole number"}


def _setting(raw: object, kind: str) -> float | int | None:
    """The value, or None for one Go would not unmarshal (a bool, a string, an int
    beyond int64: also what would overflow a float here)."""
    if isinstance(raw, bool) or (isinstance(raw, int) and abs(raw) > INT64_MAX):
        return None
    if kind == "float":
        return float(raw) if isinstance(raw, int | float) and math.isfinite(raw) else None
    return raw if isinstance(raw, int) else None


@dataclass(frozen=True)
class DeaconRestarts:
    last_restart: float | None = None
    restart_count: int = 0
    backoff_until: float | None = None
    crash_loop_since: float | None = None

    def blocked(self, now: float) -> str | None:
        """Why the Deacon may not be restarted now, or None."""
        if self.crash_loop_since is not None:
            since = format_time(datetime.fromtimestamp(self.crash_loop_since, UTC))
            return (f"in a crash loop since {since} ({self.restart_count} restarts): not "
                    f"restarted until `{CLEAR_COMMAND}`")
        if self.backoff_until is not None and now < self.backoff_until:
            return f"backing off for {self.backoff_until - now:.0f}s more"
        return None

    def after_restart(self, now: float,
                      policy: TrackerPolicy = TrackerPolicy()) -> DeaconRestarts:
        """The entry after one more restart (Gas Town's ``RecordRestart``)."""
        count = self.restart_count
        if self.last_restart is None or now - self.last_restart > policy.stable:
            count = 0
        count += 1
        loop = self.crash_loop_since
        if count >= policy.loop_count and loop is None:
            loop = now
        return DeaconRestarts(now, count, now + policy.backoff(count), loop)


def _epoch(value: object) -> float | None:
    when = parse_time(value)
    return when.timestamp() if when else None


def _ts(value: float | None) -> str:
    try:
        return format_time(datetime.fromtimestamp(value, UTC) if value is not None else None)
    except (OverflowError, OSError, ValueError):
        return format_time(None)


def entry_from_json(entry: Any) -> DeaconRestarts:
    if not isinstance(entry, dict):
        return DeaconRestarts()
    count = entry.get("restart_count")
    count = count if isinstance(count, int) and not isinstance(count, bool) else 0
    return DeaconRestarts(_epoch(entry.get("last_restart")), max(0, min(count, 1000)),
                          _epoch(entry.get("backoff_until")),
                          _epoch(entry.get("crash_loop_since")))


def entry_to_json(entry: DeaconRestarts) -> dict[str, Any]:
    """Gas Town's shape exactly: four keys, Go zero times for unset ones."""
    return {"last_restart": _ts(entry.last_restart), "restart_count": entry.restart_count,
            "backoff_until": _ts(entry.backoff_until),
            "crash_loop_since": _ts(entry.crash_loop_since)}


def read_deacon(path: Path) -> DeaconRestarts:
    """The Deacon's entry; DamagedFile for a file that cannot be read (the caller must not
    restart on it: a crash loop might be written there)."""
    data = read_json_object(path) or {}
    agents = data.get("agents")
    if agents is None:
        return DeaconRestarts()
    if not isinstance(agents, dict):
        raise DamagedFile(path, "'agents' is not an object")
    return entry_from_json(agents.get(DEACON_KEY))


def write_deacon(path: Path, entry: DeaconRestarts) -> None:
    """Replace the Deacon's entry, keeping every other key; mode 0600."""
    data = read_json_object(path) or {}
    agents = data.get("agents")
    agents = dict(agents) if isinstance(agents, dict) else {}
    agents[DEACON_KEY] = entry_to_json(entry)
    data["agents"] = agents
    write_json_atomic(path, data, mode=MODE)


def clear_deacon(path: Path) -> bool:
    """What ``gt daemon clear-backoff deacon`` does: count, backoff and crash loop zeroed,
    ``last_restart`` kept. True if there was anything to clear."""
    entry = read_deacon(path)
    if entry.restart_count == 0 and entry.backoff_until is None and \
            entry.crash_loop_since is None:
        return False
    write_deacon(path, DeaconRestarts(last_restart=entry.last_restart))
    return True
