"""refinery@<rig>: keep the rig's Refinery alive (§6.4).

Started in ``refinery/rig`` (fallback ``mayor/rig``) with ``BEADS_NO_DAEMON=1`` and
``GT_REFINERY=1``; after start it waits for the runtime's ready prompt (fatal on timeout)
and, for runtimes without Claude's hooks, types the startup fallback Gas Town uses.
"""

from __future__ import annotations

from gastown_units.services.rig_service import RigService
from gastown_units.services.sessions import StartOptions, rig_theme
from gastown_units.town.agents import AgentProgram
from gastown_units.town.identity import Role

STARTUP_FALLBACK = "gt prime && gt mail check --inject && gt nudge deacon session-started"


class Refinery(RigService):
    name = "refinery"
    role = Role.REFINERY
    patrol = "refinery"

    def start_options(self, agent: AgentProgram) -> StartOptions:
        return StartOptions(
            theme=rig_theme(self.identity),
            ready_prompt=self.settings.ready_prompt,
            startup_nudge=None if agent.name == "claude" else STARTUP_FALLBACK,
        )
