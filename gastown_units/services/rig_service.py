"""Common frame of the per-rig services (``gastown-witness@<rig>``, ``gastown-refinery@<rig>``)."""

from __future__ import annotations

import logging
import time

from gastown_units.config import Settings
from gastown_units.errors import ConfigError, ToolError
from gastown_units.ports.beads import Beads
from gastown_units.ports.tmux import Snapshot
from gastown_units.runtime.events import agent_fields
from gastown_units.runtime.loop import Context
from gastown_units.runtime.wake import Watched, session_token
from gastown_units.services.actor import BUSY_RETRY, Kept
from gastown_units.services.base import TownService, setup_errors, store_watches
from gastown_units.services.rig_gate import RigGate
from gastown_units.services.sessions import StartFailed
from gastown_units.town.agents import AgentProgram
from gastown_units.town.identity import Identity, Role
from gastown_units.town.layout import Town
from gastown_units.town.names import valid_name
from gastown_units.town.rigs import rig_prefixes

log = logging.getLogger(__name__)

# A start that failed is tried again this soon, not at the (long) interval.
START_RETRY = 30.0


class RigService(TownService):
    """A service for one rig's agent of ``role``; subclasses add their patrol."""

    role = Role.WITNESS

    def __init__(self, settings: Settings, rig: str) -> None:
        super().__init__(settings)
        if not valid_name(rig):
            raise ConfigError(f"invalid rig name {rig!r}: only letters, digits, '_' and '-'")
        self.rig = rig
        self.identity = Identity(self.role, rig)
        self.prefix = "gt"
        self._gate: RigGate | None = None
        self._last_gate_reason: str | None = None
        self._held_logged: str | None = None
        self.beads: Beads | None = None

    @property
    def gate(self) -> RigGate:
        assert self._gate is not None, "setup() not run"
        return self._gate

    def setup(self, ctx: Context) -> str:
        with setup_errors():
            town = self.open_town()
            rigs = self.load_rigs(town)
            if self.rig not in rigs:
                known = ", ".join(sorted(rigs)) or "none"
                raise ConfigError(f"rig {self.rig!r} is not in {town.rigs_json} "
                                  f"(rigs: {known})")
            self.prefix = rig_prefixes(town, rigs)[self.rig]
            self.agent(self.role, self.rig, town=town)
        self.take_town(town)
        self.identity = self.spelt(self.identity)
        self.beads = Beads(binary=self.settings.bd_bin, cwd=town.root,
                           timeout=self.settings.bd_timeout)
        self._gate = RigGate(town, self.beads, self.rig, self.prefix,
                             max_age=self.settings.fact_max_age)
        with setup_errors():
            self.setup_rig(town)
        return f"keeping {self.identity.session} for rig {self.rig} of {town.root}"

    def setup_rig(self, town: Town) -> None:
        """Subclass hook: build rig-specific ports and state."""

    def holder(self) -> str:
        return f"{self.name}@{self.rig}"

    def watched(self) -> list[Watched]:
        """Also the rig's wisp config (``gt rig park``) and the stores of its rig bead
        (``gt rig dock``): a parked or docked rig is honoured within seconds."""
        wisp = self.town.wisp_config(self.rig)
        return [*super().watched(), Watched(wisp.parent, frozenset({wisp.name})),
                *store_watches(self.gate.stores())]

    def wakes_for(self, token: str) -> bool:
        """A tmux event wakes us for our own agent's session only; the rig's polecats are
        polecat-health's, and their deaths need no patrol before the next pass."""
        return token == session_token(self.identity.session)

    def patrol_pass(self, snap: Snapshot, ctx: Context) -> list[str]:
        """Subclass hook: the rig patrol after the agent is kept; returns status parts."""
        return []

    def tick(self, ctx: Context) -> str:
        if ctx.reloaded:
            self.gate.forget()
        begun = self.prelude(ctx, self.role, self.rig)
        if isinstance(begun, str):
            return begun
        agent, snap = begun
        gate = self.gate.check()
        if gate.reason != self._last_gate_reason:
            if not gate.operational:
                log.warning("rig %s is not operational (%s): starting nothing", self.rig,
                            gate.reason)
            elif self._last_gate_reason is not None:
                log.info("rig %s is operational again", self.rig)
            self._last_gate_reason = gate.reason
        if not gate.operational:
            return f"rig {self.rig} not operational: {gate.reason}; nothing started"
        ctx.progress()
        status, changed = self._keep(agent, snap, ctx)
        ctx.progress()
        # Look at tmux again only if this pass changed it (one listing per quiet pass).
        parts = [status, *self.patrol_pass(self.tmux.snapshot() if changed else snap, ctx)]
        return "; ".join(p for p in parts if p)

    def _keep(self, agent: AgentProgram, snap: Snapshot, ctx: Context) -> tuple[str, bool]:
        """Keep the rig agent; (status part, whether sessions changed)."""
        where = agent_fields(self.identity)
        session = self.identity.session
        try:
            kept = self.actor.keep(self.identity, agent, snap, ctx)
        except (StartFailed, ToolError) as exc:
            log.error("could not start %s: %s", session, exc, extra=where)
            ctx.failed(str(exc))
            ctx.retry_in(START_RETRY)
            return f"{session} start failed: {exc}", True
        if kept.outcome is Kept.HELD:
            if self._held_logged != kept.detail:
                log.info("%s was %s: not restarting it (start it by hand, or "
                         "`gastown-units clear-backoff %s`)", session, kept.detail,
                         self.identity.address, extra=where)
                self._held_logged = kept.detail
            return f"{session} down: {kept.detail}", False
        self._held_logged = None
        if kept.outcome is Kept.ON_HOLD:  # the actor logged it once per hold
            return f"{session} {kept.detail}: not started", False
        if kept.outcome is Kept.ELSEWHERE:  # the actor logged it once per incident
            return kept.detail, False
        if kept.outcome is Kept.BUSY:
            ctx.retry_in(BUSY_RETRY)  # look again once the other service is done
        if kept.outcome is Kept.BUSY or kept.pane is None:
            return f"{session}: another service is acting on it ({kept.detail})", False
        up = (time.time() - kept.pane.created) / 60
        return (f"{session} {kept.outcome} (pane PID {kept.pane.pid}, up {up:.0f} min)",
                kept.outcome is not Kept.RUNNING)
