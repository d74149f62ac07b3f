"""The Deacon's heartbeat file (§1.5) and Boot's status file (§1.6)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from gastown_units.town.jsonfile import format_time, parse_time, read_json_object, write_json_atomic
from gastown_units.town.layout import Town


@dataclass(frozen=True)
class Heartbeat:
    """What ``deacon/heartbeat.json`` says; ``timestamp`` None when missing or unreadable."""

    timestamp: datetime | None
    cycle: int = 0
    last_action: str = ""
    problem: str = ""  # why the file could not be read (shown in the status line)

    def age(self, now: datetime) -> float | None:
        """Seconds since the last beat; None if there is no usable heartbeat."""
        if self.timestamp is None:
            return None
        return max(0.0, (now - self.timestamp).total_seconds())


def read_heartbeat(town: Town) -> Heartbeat:
    """Missing or malformed file reads as "no heartbeat", as in Gas Town: the check is
    skipped (no nudge, no kill), and ``problem`` says why for the status line."""
    try:
        data = read_json_object(town.heartbeat)
    except ValueError as exc:
        return Heartbeat(None, problem=str(exc))
    if data is None:
        return Heartbeat(None)
    cycle = data.get("cycle")
    action = data.get("last_action")
    stamp = parse_time(data.get("timestamp"))
    return Heartbeat(
        stamp,
        cycle if isinstance(cycle, int) and not isinstance(cycle, bool) else 0,
        action if isinstance(action, str) else "",
        "" if stamp else f"{town.heartbeat}: no usable 'timestamp'",
    )


@dataclass(frozen=True)
class BootStatus:
    """One Boot triage result, written to ``deacon/dogs/boot/.boot-status.json``."""

    started_at: datetime
    completed_at: datetime | None
    last_action: str  # start|nothing|error|report|nudge|restart
    target: str = ""  # deacon|deacon-missing|deacon-stale|deacon-stuck
    error: str = ""
    running: bool = False

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "running": self.running,
            "started_at": format_time(self.started_at),
            "completed_at": format_time(self.completed_at),
        }
        for key in ("last_action", "target", "error"):  # omitempty in Gas Town
            if getattr(self, key):
                data[key] = getattr(self, key)
        return data


def write_boot_status(town: Town, status: BootStatus) -> None:
    write_json_atomic(town.boot_status, status.to_json(), mode=0o644)


def now_utc() -> datetime:
    return datetime.now(UTC)
