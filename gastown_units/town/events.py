"""The town's event feed ``.events.jsonl`` (§1.2, §6.5): one JSON object per line."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

from gastown_units.town.jsonfile import format_time
from gastown_units.town.layout import Town


def go_duration(seconds: float, *, round_to_minute: bool = False) -> str:
    """Go's ``Duration.String()``: ``30s``, ``45m0s``, ``1h2m0s``."""
    total = int(round(seconds / 60) * 60) if round_to_minute else int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def append_event(town: Town, kind: str, payload: dict[str, Any], *, actor: str = "daemon",
                 visibility: str = "feed") -> None:
    """Append one event line with O_APPEND, so concurrent writers never interleave."""
    event = {"ts": format_time(datetime.now(UTC)), "source": "gt", "type": kind,
             "actor": actor, "payload": payload, "visibility": visibility}
    line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    fd = os.open(town.events, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
