"""``gt sling``: hand a bead to a new polecat of a rig (what auto-spawn uses)."""

from __future__ import annotations

from gastown_units.ports.gt import GtCommand


class Sling(GtCommand):
    def sling(self, bead: str, rig: str) -> str:
        return self.run("sling", bead, rig).stdout.strip()
