"""Patrol toggles in ``mayor/daemon.json`` (§6.9): missing file, section or key = enabled."""

from __future__ import annotations

from gastown_units.town.jsonfile import read_json
from gastown_units.town.layout import Town


def patrol_enabled(town: Town, patrol: str) -> bool:
    """Whether ``patrols.<patrol>.enabled`` is not false. ValueError for a malformed file."""
    data = read_json(town.daemon_json)
    if data is None:
        return True
    if not isinstance(data, dict):
        raise ValueError(f"{town.daemon_json}: not a JSON object")
    patrols = data.get("patrols")
    if not isinstance(patrols, dict):
        return True
    entry = patrols.get(patrol)
    if not isinstance(entry, dict):
        return True
    return entry.get("enabled") is not False
