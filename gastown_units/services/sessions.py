"""Agent sessions as every service sees them: alive, zombie or missing; start, kill, nudge.

The mechanics only (contract §3.4-§3.8): liveness, the start sequence and nudging are
written once here. Which agent may be acted on, and when, is the actor's business
(:mod:`gastown_units.services.actor`), which holds the agent's lock around these calls.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from enum import Enum
from pathlib import Path

from gastown_units.errors import GastownError, ToolError
from gastown_units.ports import procs
from gastown_units.ports.tmux import Pane, Tmux
from gastown_units.runtime.events import agent_fields
from gastown_units.runtime.loop import Context
from gastown_units.services.profiles import StartProfile, pane_died_hook
from gastown_units.town.agents import SHELLS, AgentProgram, start_command, startup_prompt
from gastown_units.town.claude_settings import ensure_claude_settings
from gastown_units.town.identity import Identity, Role
from gastown_units.town.layout import Town

log = logging.getLogger(__name__)

BYPASS_DIALOG = "Bypass Permissions mode"
# Roles whose working directory is a git checkout: never create it, a missing one is an error.
_CHECKOUT_ROLES = frozenset({Role.REFINERY, Role.POLECAT, Role.CREW})


class Liveness(Enum):
    RUNNING = "running"
    ZOMBIE = "zombie"  # session exists, but its pane runs a shell (or nothing) instead
    MISSING = "missing"


class StartFailed(GastownError):
    """A session was created but its agent never came up; the session was removed."""


def liveness(pane: Pane | None, agent: AgentProgram) -> Liveness:
    """Positive evidence only: a missing session, a dead pane, or a shell where the agent was."""
    if pane is None:
        return Liveness.MISSING
    return pane_liveness(pane.command, pane.pid, pane.dead, agent)


def pane_liveness(command: str, pid: int, dead: bool, agent: AgentProgram) -> Liveness:
    """The liveness rule of every keeper and of ``gastown-units status`` (§3.5)."""
    if dead:
        return Liveness.ZOMBIE  # remain-on-exit kept the pane of an exited agent
    if agent.is_running(command):
        return Liveness.RUNNING
    if command in SHELLS and any(agent.is_running(n) for n in procs.child_names(pid)):
        return Liveness.RUNNING  # agent started from a shell (send-keys restarts)
    return Liveness.ZOMBIE


class SessionKeeper:
    """Starts, kills and nudges agent sessions on one tmux server."""

    def __init__(self, town: Town, tmux: Tmux, *, start_timeout: float, kill_grace: float
                 ) -> None:
        self.town = town
        self.tmux = tmux
        self.start_timeout = start_timeout
        self.kill_grace = kill_grace
        self._last_nudge: dict[str, float] = {}

    def kill(self, session: str, pane: Pane | None, ctx: Context,
             who: Identity | None = None) -> None:
        """Kill the pane's process tree (deepest first, TERM then KILL), then the session."""
        if pane is not None:
            count = procs.kill_tree(pane.pid, grace=self.kill_grace, progress=ctx.progress)
            log.info("killed %d process(es) of session %s", count, session,
                     extra=agent_fields(who) if who else None)
        self.tmux.kill_session(session)

    def start(self, identity: Identity, agent: AgentProgram, ctx: Context,
              profile: StartProfile) -> Pane:
        """Create the agent's session with its environment in the start command; wait for it.

        Raises StartFailed (session removed) when the agent does not come up in time.
        Pre-sync is the actor's (it holds the agent's lock); the pane-died hook is set at once.
        """
        theme, extra_env = profile.theme, profile.extra_env
        session = identity.session
        workdir: Path = identity.workdir(self.town)
        if identity.role in _CHECKOUT_ROLES:
            if not workdir.is_dir():
                raise StartFailed(f"working directory {workdir} of {session} does not exist")
        else:
            workdir.mkdir(parents=True, exist_ok=True)
        if agent.name == "claude":
            try:
                written = ensure_claude_settings(identity, self.town)
            except OSError as exc:
                log.warning("cannot write Claude settings for %s: %s", identity, exc)
            else:
                if written:
                    log.info("wrote Claude hook settings %s", written)
        env = {**identity.env(self.town), **(extra_env or {})}
        text = startup_prompt(identity, datetime.now().astimezone()) if profile.beacon else None
        command = start_command(env, agent, text)
        self.tmux.new_session(session, cwd=workdir, command=command)
        log.info("started session %s in %s running %s", session, workdir, agent.argv[0],
                 extra=agent_fields(identity))
        try:
            self.tmux.set_environment(session, env)  # for humans who open a new pane
            if theme:
                self.tmux.set_options(session, theme.options(session))
        except ToolError as exc:
            log.warning("session %s: environment/theme not set: %s", session, exc,
                        extra=agent_fields(identity))
        if profile.pane_died_hook:  # at once, as Gas Town does: before the agent is up
            try:
                self.tmux.set_hook(session, "pane-died", pane_died_hook(identity))
            except ToolError as exc:
                log.warning("pane-died hook not set on %s: %s", session, exc,
                            extra=agent_fields(identity))
        pane = self.wait_for_agent(session, agent, ctx)
        self.accept_bypass(session, ctx)
        if profile.ready_prompt:
            self.wait_for_prompt(session, profile.ready_prompt, ctx)
        elif profile.ready_delay:
            ctx.sleep(profile.ready_delay)  # no known prompt: the runtime's delay (§3.5)
        if profile.startup_nudge:
            self.nudge(session, profile.startup_nudge, ctx, who=identity)
        return pane

    def wait_for_prompt(self, session: str, prefix: str, ctx: Context) -> None:
        """Poll the last screen lines for the runtime's ready prompt (§3.5).

        Not fatal: the agent runs (``wait_for_agent`` saw it), so a prompt that never shows
        (another runtime, a new version's prompt) is reported, never a reason to kill.
        """
        wanted = prefix.rstrip()  # capture-pane drops trailing blanks
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            try:
                screen = self.tmux.capture(session, 10)
            except ToolError as exc:
                log.warning("cannot read %s's screen for its ready prompt: %s", session, exc)
                return
            if any(line.startswith(wanted) for line in screen.splitlines()):
                return
            ctx.sleep(0.2)
        log.warning("%s showed no ready prompt %r within %gs; it runs, so it is left "
                    "running (set GT_READY_PROMPT to its runtime's prompt)", session, wanted,
                    self.start_timeout)

    def wait_for_agent(self, session: str, agent: AgentProgram, ctx: Context) -> Pane:
        """Poll until the pane runs the agent; on timeout kill the session (§3.5)."""
        deadline = time.monotonic() + self.start_timeout
        pane = None
        while True:
            pane = self.tmux.snapshot().first_pane(session)
            state = liveness(pane, agent)
            if state is Liveness.RUNNING and pane is not None:
                return pane
            if state is Liveness.MISSING:
                raise StartFailed(f"session {session} vanished while starting (agent exited?)")
            if time.monotonic() >= deadline:
                break
            ctx.sleep(0.1)
        self.kill(session, pane, ctx)
        shown = pane.command if pane else "nothing"
        raise StartFailed(f"agent of {session} did not start within {self.start_timeout:g}s "
                          f"(pane runs {shown}); session removed")

    def accept_bypass(self, session: str, ctx: Context) -> None:
        """Answer Claude's bypass-permissions dialog if it shows (§3.7)."""
        ctx.sleep(1.0)
        try:
            screen = self.tmux.capture(session, 30)
        except ToolError as exc:
            log.debug("capture of %s failed: %s", session, exc)
            return
        if BYPASS_DIALOG in screen:
            self.tmux.send_key(session, "Down")
            ctx.sleep(0.2)
            self.tmux.send_key(session, "Enter")
            log.info("accepted the bypass-permissions dialog in %s", session)

    def nudge(self, session: str, message: str, ctx: Context, *, min_interval: float = 0.0,
              who: Identity | None = None) -> bool:
        """Type ``message`` into the agent and submit it (§3.7); False if rate-limited."""
        last = self._last_nudge.get(session)
        if last is not None and time.monotonic() - last < min_interval:
            return False
        self.tmux.send_literal(session, message)
        ctx.sleep(0.5)
        self.tmux.send_key(session, "Escape")
        ctx.sleep(0.1)
        for attempt in range(3):
            try:
                self.tmux.send_key(session, "Enter")
                break
            except ToolError:
                if attempt == 2:
                    raise
                ctx.sleep(0.2)
        try:
            if self.tmux.display(session, "#{session_attached}") != "1":
                self.tmux.resize_pane(session, "-1")  # SIGWINCH wakes a detached agent
                ctx.sleep(0.05)
                self.tmux.resize_pane(session, "+1")
        except ToolError as exc:  # best effort, as in Gas Town
            log.debug("wake-up resize of %s failed: %s", session, exc)
        self._last_nudge[session] = time.monotonic()
        log.info("nudged %s: %s", session, message, extra=agent_fields(who) if who else None)
        return True

