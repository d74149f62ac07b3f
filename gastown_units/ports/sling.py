"""``gt sling``: hand a bead to a new polecat of a rig (what auto-spawn uses).

Every argv element from data goes through :mod:`gastown_units.ports.argv` or after ``--``:
the bead (from ``bd ready``) is a checked ID and the rig a checked name.
"""

from __future__ import annotations

from gastown_units.ports import runner
from gastown_units.ports.argv import checked_bead_id, checked_name
from gastown_units.ports.gt import GtCommand


class Sling(GtCommand):
    def start(self, bead: str, rig: str, *, timeout: float) -> runner.Background:
        """Start ``gt sling BEAD RIG`` in the background: it returns only once the new
        polecat's runtime is up (gastown.md §3.5), often longer than a watchdog period."""
        argv = [self.binary, "sling", checked_bead_id(bead), checked_name("rig", rig)]
        return runner.Background(argv, timeout=timeout,
                                 cwd=self.cwd, env=self.env)
