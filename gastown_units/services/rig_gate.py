"""Is a rig operational? Wisp config (§2) plus the rig bead's labels, failing safe.

Gating only ever *withholds* starts: a parked rig, an unreadable wisp config or a ``bd`` that
fails all mean "start nothing", and none of them is a reason to kill anything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gastown_units.errors import ToolError
from gastown_units.ports.beads import Beads
from gastown_units.town.layout import Town
from gastown_units.town.wisp import read_wisp_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gate:
    operational: bool
    reason: str = ""


class RigGate:
    def __init__(self, town: Town, beads: Beads, rig: str, prefix: str) -> None:
        self.town = town
        self.beads = beads
        self.rig = rig
        self.rig_bead = f"{prefix}-rig-{rig}"
        self._warned_missing = False

    def check(self) -> Gate:
        try:
            wisp = read_wisp_config(self.town, self.rig)
        except ValueError as exc:
            return Gate(False, f"wisp config unreadable, starting nothing: {exc}")
        if not wisp.exists and not self._warned_missing:
            log.warning("no wisp config for %s - parked state may have been lost", self.rig)
            self._warned_missing = True
        reason = wisp.not_operational_reason()
        if reason:
            return Gate(False, reason)
        try:
            bead = self.beads.show(self.rig_bead)
        except ToolError as exc:
            return Gate(False, f"bd failed reading {self.rig_bead}, starting nothing: {exc}")
        labels = bead.get("labels") if bead else None
        for status in ("docked", "parked"):
            if isinstance(labels, list) and f"status:{status}" in labels:
                return Gate(False, f"rig is {status} (label status:{status} on {self.rig_bead})")
        return Gate(True)
