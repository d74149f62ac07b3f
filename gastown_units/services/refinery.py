"""refinery@<rig>: keep the rig's Refinery alive (§6.4).

Started in ``refinery/rig`` (fallback ``mayor/rig``) with ``BEADS_NO_DAEMON=1`` and
``GT_REFINERY=1``; after start it waits for the runtime's ready prompt (fatal on timeout)
and, for runtimes without Claude's hooks, types the startup fallback Gas Town uses
(all of it in its start profile, shared with lifecycle-mail).
"""

from __future__ import annotations

from gastown_units.services.rig_service import RigService
from gastown_units.town.identity import Role


class Refinery(RigService):
    """The rig's Refinery; how it starts is its start profile (``services.profiles``)."""

    name = "refinery"
    role = Role.REFINERY
    patrol = "refinery"
