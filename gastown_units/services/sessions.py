"""Agent sessions as every keeper sees them: alive, zombie or missing; start, kill, nudge.

Shared by the Deacon keeper and the rig services, so that liveness, the start sequence
(contract §3.4-§3.8) and nudging are written once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path

from gastown_units.errors import GastownError, ToolError
from gastown_units.ports import procs
from gastown_units.ports.tmux import Pane, Snapshot, Tmux
from gastown_units.runtime.loop import Context
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


@dataclass(frozen=True)
class Theme:
    """Status-bar look of a session (§3.10)."""

    bg: str
    fg: str
    label: str

    def options(self, session: str) -> dict[str, str]:
        return {
            "status-style": f"bg={self.bg},fg={self.fg}",
            "status-left-length": "25",
            "status-left": f"{self.label} ",
            "status-right-length": "80",
            "status-interval": "5",
            "status-right": f"#(gt status-line --session={session} 2>/dev/null) %H:%M",
        }


def liveness(pane: Pane | None, agent: AgentProgram) -> Liveness:
    """Positive evidence only: a missing session, a dead pane, or a shell where the agent was."""
    if pane is None:
        return Liveness.MISSING
    if pane.dead:
        return Liveness.ZOMBIE
    if agent.is_running(pane.command):
        return Liveness.RUNNING
    if pane.command in SHELLS and any(agent.is_running(n) for n in procs.child_names(pane.pid)):
        return Liveness.RUNNING  # agent started from a shell (send-keys restarts)
    return Liveness.ZOMBIE


_RIG_PALETTE = (
    ("#1e3a5f", "#e0e0e0"), ("#2d5a3d", "#e0e0e0"), ("#8b4513", "#f5f5dc"),
    ("#4a3050", "#e0e0e0"), ("#4a5568", "#e0e0e0"), ("#b33a00", "#f5f5dc"),
    ("#1a1a2e", "#c0c0c0"), ("#722f37", "#f5f5dc"), ("#0d5c63", "#e0e0e0"),
    ("#6d4c41", "#f5f5dc"),
)  # ocean forest rust plum slate ember midnight wine teal copper (§3.10)
_ICONS = {"witness": "🦉", "refinery": "🏭", "crew": "👷", "polecat": "😺"}


def fnv1a_32(text: str) -> int:
    value = 2166136261
    for byte in text.encode():
        value = ((value ^ byte) * 16777619) & 0xFFFFFFFF
    return value


def rig_theme(identity: Identity) -> Theme:
    """The rig's colours (FNV-1a of the rig name picks one of ten) and the agent's label."""
    bg, fg = _RIG_PALETTE[fnv1a_32(str(identity.rig)) % len(_RIG_PALETTE)]
    worker = identity.name or str(identity.role)
    label = f"{identity.rig}/crew/{worker}" if identity.role.value == "crew" else \
        f"{identity.rig}/{worker}"
    return Theme(bg, fg, f"{_ICONS.get(identity.role.value, '')} {label}".strip())


@dataclass(frozen=True)
class StartOptions:
    """How a role's session comes up: theme, extra env, ready prompt, startup nudge."""

    theme: Theme | None = None
    extra_env: Mapping[str, str] | None = None
    ready_prompt: str | None = None  # wait for a pane line starting with this (refinery)
    startup_nudge: str | None = None  # typed once the agent is ready


@dataclass(frozen=True)
class Ensured:
    """Outcome of :meth:`SessionKeeper.ensure`: ``running`` (left alone) or ``started``."""

    outcome: str
    pane: Pane


class SessionKeeper:
    """Starts, kills and nudges agent sessions on one tmux server."""

    def __init__(self, town: Town, tmux: Tmux, *, start_timeout: float, kill_grace: float
                 ) -> None:
        self.town = town
        self.tmux = tmux
        self.start_timeout = start_timeout
        self.kill_grace = kill_grace
        self._last_nudge: dict[str, float] = {}

    def kill(self, session: str, pane: Pane | None, ctx: Context) -> None:
        """Kill the pane's process tree (deepest first, TERM then KILL), then the session."""
        if pane is not None:
            count = procs.kill_tree(pane.pid, grace=self.kill_grace, progress=ctx.progress)
            log.info("killed %d process(es) of session %s", count, session,
                     extra={"GT_AGENT": session})
        self.tmux.kill_session(session)

    def ensure(self, identity: Identity, agent: AgentProgram, snap: Snapshot, ctx: Context,
               options: StartOptions | None = None) -> Ensured:
        """Leave a running agent alone; kill a zombie; start a missing one.

        Raises StartFailed or ToolError when the start does not work out.
        """
        pane = snap.first_pane(identity.session)
        state = liveness(pane, agent)
        if state is Liveness.RUNNING and pane is not None:
            return Ensured("running", pane)
        where = {"GT_AGENT": identity.address}
        if state is Liveness.ZOMBIE:
            log.warning("%s is a zombie (pane runs %r, not the agent): killing and recreating",
                        identity.session, pane.command if pane else "", extra=where)
            self.kill(identity.session, pane, ctx)
        else:
            log.warning("%s is not running: starting it", identity.session, extra=where)
        new = self.start(identity, agent, ctx, options or StartOptions())
        log.info("%s running (pane PID %d)", identity.session, new.pid, extra=where)
        return Ensured("started", new)

    def start(self, identity: Identity, agent: AgentProgram, ctx: Context,
              options: StartOptions | None = None, *, prompt: bool = True) -> Pane:
        """Create the agent's session with its environment in the start command; wait for it.

        Raises StartFailed (session removed) when the agent does not come up in time.
        """
        options = options or StartOptions()
        theme, extra_env = options.theme, options.extra_env
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
        text = startup_prompt(identity, datetime.now().astimezone()) if prompt else None
        command = start_command(env, agent, text)
        self.tmux.new_session(session, cwd=workdir, command=command)
        log.info("started session %s in %s running %s", session, workdir, agent.argv[0],
                 extra={"GT_AGENT": identity.address})
        try:
            self.tmux.set_environment(session, env)  # for humans who open a new pane
            if theme:
                self.tmux.set_options(session, theme.options(session))
        except ToolError as exc:
            log.warning("session %s: environment/theme not set: %s", session, exc)
        pane = self.wait_for_agent(session, agent, ctx)
        self.accept_bypass(session, ctx)
        if options.ready_prompt:
            self.wait_for_prompt(session, options.ready_prompt, ctx)
        if options.startup_nudge:
            self.nudge(session, options.startup_nudge, ctx)
        return pane

    def wait_for_prompt(self, session: str, prefix: str, ctx: Context) -> None:
        """Poll the last screen lines for the runtime's ready prompt (§3.5); fatal on timeout."""
        wanted = prefix.rstrip()  # capture-pane drops trailing blanks
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            screen = self.tmux.capture(session, 10)
            if any(line.startswith(wanted) for line in screen.splitlines()):
                return
            ctx.sleep(0.2)
        pane = self.tmux.snapshot().first_pane(session)
        self.kill(session, pane, ctx)
        raise StartFailed(f"{session} showed no ready prompt {wanted!r} within "
                          f"{self.start_timeout:g}s; session removed")

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

    def nudge(self, session: str, message: str, ctx: Context, *, min_interval: float = 0.0
              ) -> bool:
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
        log.info("nudged %s: %s", session, message, extra={"GT_AGENT": session})
        return True

