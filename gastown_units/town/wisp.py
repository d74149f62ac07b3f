"""A rig's wisp config (``.beads-wisp/config/<rig>.json``, contract §2): parked, docked, blocked."""

from __future__ import annotations

from dataclasses import dataclass, field

from gastown_units.town.jsonfile import DamagedFile, read_json_object
from gastown_units.town.layout import Town


@dataclass(frozen=True)
class WispConfig:
    """Values and blocked keys; ``exists`` False when the file is missing."""

    values: dict[str, object] = field(default_factory=dict)
    blocked: frozenset[str] = frozenset()
    exists: bool = True

    def get(self, key: str) -> object:
        """A blocked key reads as null, as Gas Town's ``Get`` does."""
        return None if key in self.blocked else self.values.get(key)

    def not_operational_reason(self) -> str | None:
        """Why the rig may not be acted on, or None (``isRigOperational``)."""
        status = self.get("status")
        if status == "parked":
            return "rig is parked"
        if status == "docked":
            return "rig is docked"
        if "auto_restart" in self.blocked:
            return "auto_restart is blocked"
        if self.values.get("auto_restart") is False:
            return "auto_restart is false"
        return None


def read_wisp_config(town: Town, rig: str) -> WispConfig:
    """The rig's wisp config; DamagedFile (a ValueError) when it exists but is malformed."""
    path = town.wisp_config(rig)
    data = read_json_object(path)
    if data is None:
        return WispConfig(exists=False)
    values = data.get("values") or {}
    blocked = data.get("blocked") or []
    if not isinstance(values, dict) or not isinstance(blocked, list) \
            or not all(isinstance(b, str) for b in blocked):
        raise DamagedFile(path, "'values' must be an object and 'blocked' a list of strings")
    return WispConfig(dict(values), frozenset(blocked))
