"""Small JSON state files of our own services, under ``<town>/daemon/units/``.

State that must survive a service restart (ladder counts, issues already spawned) lives
here, beside Gas Town's own daemon state, written atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gastown_units.town.jsonfile import read_state_object, write_json_atomic
from gastown_units.town.layout import Town

log = logging.getLogger(__name__)


def state_path(town: Town, name: str) -> Path:
    return town.daemon_dir / "units" / f"{name}.json"


def load_state(path: Path) -> dict[str, Any]:
    """The saved state, or ``{}`` (a corrupt file is logged and set aside, not fatal)."""
    return read_state_object(path)


def save_state(path: Path, data: dict[str, Any]) -> None:
    write_json_atomic(path, data, mode=0o644)
