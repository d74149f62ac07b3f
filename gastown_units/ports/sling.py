"""``gt sling``: hand a bead to a new polecat of a rig (what auto-spawn uses)."""

from __future__ import annotations

from gastown_units.ports import runner
from gastown_units.ports.gt import GtCommand


class Sling(GtCommand):
    def start(self, bead: str, rig: str, *, timeout: float) -> runner.Background:
        """Start ``gt sling BEAD RIG`` in the background: it returns only once the new
        polecat's runtime is up (gastown.md §3.5), often longer than a watchdog period."""
        return runner.Background([self.binary, "sling", bead, rig], timeout=timeout,
                                 cwd=self.cwd, env=self.env)
