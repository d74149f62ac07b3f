"""Patrol toggles in ``mayor/daemon.json`` (§6.9): missing file, section or key = enabled."""

from __future__ import annotations

from gastown_units.town.jsonfile import DamagedFile, read_json_object
from gastown_units.town.layout import Town


def patrol_enabled(town: Town, patrol: str) -> bool:
    """Whether ``patrols.<patrol>.enabled`` is not false. DamagedFile for a malformed file:
    unknown whether the patrol is on, so the caller does not act (and says so)."""
    data = read_json_object(town.daemon_json)
    if data is None:
        return True
    patrols = data.get("patrols")
    if patrols is None:
        return True
    if not isinstance(patrols, dict):
        raise DamagedFile(town.daemon_json, "'patrols' must be an object")
    entry = patrols.get(patrol)
    if entry is None:
        return True
    if not isinstance(entry, dict):
        raise DamagedFile(town.daemon_json, f"patrols.{patrol} must be an object")
    enabled = entry.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise DamagedFile(town.daemon_json, f"patrols.{patrol}.enabled must be true or false")
    return enabled is not False
