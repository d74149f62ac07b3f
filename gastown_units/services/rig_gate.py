"""Is a rig operational? Wisp config (§2) plus the rig bead's labels, failing safe.

Gating only ever *withholds* starts: a parked rig, an unreadable wisp config or a ``bd`` that
fails all mean "start nothing", and none of them is a reason to kill anything. The rig bead
is kept while its stores look unchanged (``runtime.facts``): a pass woken by a tmux event
then starts the agent without a ``bd`` call.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gastown_units.errors import ToolError
from gastown_units.ports.beads import Beads
from gastown_units.runtime.facts import Cached
from gastown_units.town.layout import Town
from gastown_units.town.rigs import rig_database
from gastown_units.town.stores import resolve_store, signature
from gastown_units.town.wisp import read_wisp_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gate:
    """A rig's verdict; ``unknown`` when it is closed only because a read failed."""

    operational: bool
    reason: str = ""
    unknown: bool = False


def wisp_gate(town: Town, rig: str) -> Gate | None:
    """The wisp config's verdict: a closed Gate, or None when it allows acting."""
    try:
        wisp = read_wisp_config(town, rig)
    except ValueError as exc:
        return Gate(False, f"wisp config unreadable, starting nothing: {exc}", unknown=True)
    reason = wisp.not_operational_reason()
    return Gate(False, reason) if reason else None


def label_gate(bead: dict[str, object] | None, bead_id: str) -> Gate | None:
    """The rig bead's ``status:docked``/``status:parked`` labels ([H] semantics)."""
    labels = bead.get("labels") if bead else None
    for status in ("docked", "parked"):
        if isinstance(labels, list) and f"status:{status}" in labels:
            return Gate(False, f"rig is {status} (label status:{status} on {bead_id})")
    return None


class RigGate:
    def __init__(self, town: Town, beads: Beads, rig: str, prefix: str, *,
                 max_age: float) -> None:
        self.town = town
        self.beads = beads
        self.rig = rig
        self.prefix = prefix
        self.rig_bead = f"{prefix}-rig-{rig}"
        self._warned_missing = False
        self._bead: Cached[dict[str, Any] | None] = Cached(max_age)

    def stores(self) -> list[Path]:
        """Where ``bd show`` of the rig bead looks: the town's store (its routes) and the
        one the rig's prefix routes to (beads.md §7.6)."""
        found = [resolve_store(self.town.root / ".beads"),
                 resolve_store(rig_database(self.town, self.rig, self.prefix))]
        return list(dict.fromkeys(found))

    def forget(self) -> None:
        """Read the rig bead afresh next time (``systemctl reload``)."""
        self._bead.forget()

    def check(self) -> Gate:
        if not self.town.wisp_config(self.rig).exists() and not self._warned_missing:
            # Gas Town warns "parked state may have been lost"; on a new town (no rig ever
            # parked) that scares for nothing. A missing file means operational (§2).
            log.info("rig %s has no wisp config (%s): operational, as Gas Town treats it; "
                     "`gt rig park %s` would create it", self.rig,
                     self.town.wisp_config(self.rig), self.rig)
            self._warned_missing = True
        closed = wisp_gate(self.town, self.rig)
        if closed:
            return closed
        try:
            bead = self._bead.get(self._look(), lambda: self.beads.show(self.rig_bead))
        except ToolError as exc:
            return Gate(False, f"bd failed reading {self.rig_bead}, starting nothing: {exc}",
                        unknown=True)
        return label_gate(bead, self.rig_bead) or Gate(True)

    def _look(self) -> Hashable | None:
        """The stores' look now, or None (not kept) when it cannot be seen."""
        try:
            return signature(self.stores())
        except (OSError, ValueError):
            return None
