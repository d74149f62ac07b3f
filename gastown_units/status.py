"""``gastown-units status``: the town's agents and what their tmux panes run.

An interactive, read-only command, so it reads tmux through libtmux (tolerant of Debian's
0.21 and of 0.6x): no watchdog waits on it, and libtmux's object model saves parsing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import libtmux

from gastown_units.config import Settings
from gastown_units.services.sessions import pane_liveness
from gastown_units.town.agents import resolve_agent
from gastown_units.town.identity import BOOT, DEACON, Identity, Role
from gastown_units.town.layout import Town
from gastown_units.town.polecats import usable_name
from gastown_units.town.rigs import load_rigs


@dataclass(frozen=True)
class AgentRow:
    identity: Identity
    state: str  # running | zombie | missing | unknown (the agent cannot be resolved)
    pid: int | None
    command: str


def expected_agents(town: Town, rigs: list[str]) -> list[Identity]:
    """The Deacon, Boot, each rig's Witness and Refinery, and every polecat/crew dir."""
    agents = [DEACON, BOOT]
    for rig in rigs:
        agents += [Identity(Role.WITNESS, rig), Identity(Role.REFINERY, rig)]
        for role, sub in ((Role.POLECAT, "polecats"), (Role.CREW, "crew")):
            base = town.rig_dir(rig) / sub
            try:
                names = sorted(p.name for p in base.iterdir() if p.is_dir())
            except OSError:  # missing or unlistable: no agents shown from it
                names = []
            agents += [Identity(role, rig, n) for n in names
                       if not n.startswith(".") and usable_name(n)]
    return agents


def tmux_panes(socket: str | None) -> dict[str, tuple[int, str, bool]] | None:
    """First pane of every session: name -> (PID, command, dead); None without a server."""
    server: Any = libtmux.Server(socket_name=socket) if socket else libtmux.Server()
    if not server.is_alive():
        return None
    panes: dict[str, tuple[int, str, bool]] = {}
    # Not server.panes: libtmux 0.21 returns only one session's panes there.
    for session in server.sessions:
        for window in session.windows:
            for pane in window.panes:
                name = str(session.session_name)
                if name not in panes and pane.pane_pid:
                    panes[name] = (int(pane.pane_pid), str(pane.pane_current_command or ""),
                                   str(getattr(pane, "pane_dead", "") or "") == "1")
    return panes


def collect(settings: Settings) -> tuple[Town, list[AgentRow], bool]:
    """(town, one row per expected agent, whether the tmux server is up)."""
    town = Town.open(settings.town_root)
    rigs = sorted(load_rigs(town))
    panes = tmux_panes(settings.tmux_socket)
    rows = []
    for who in expected_agents(town, rigs):
        pane = (panes or {}).get(who.session)
        if pane is None:
            rows.append(AgentRow(who, "missing", None, ""))
            continue
        try:
            agent = resolve_agent(town, who.role, who.rig, settings.agent_command)
        except ValueError:  # a damaged settings file: no verdict, as the keepers do
            rows.append(AgentRow(who, "unknown", pane[0], pane[1]))
            continue
        state = pane_liveness(pane[1], pane[0], pane[2], agent).value  # the keepers' rule
        rows.append(AgentRow(who, state, pane[0], pane[1]))
    return town, rows, panes is not None
