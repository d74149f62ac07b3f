"""Agent sessions as every service sees them: alive, zombie or missing; start, kill, nudge.

The mechanics only (contract §3.4-§3.8): liveness, the start sequence and nudging are
written once here. Which agent may be acted on, and when, is the actor's business
(:mod:`gastown_units.services.actor`), which holds the agent's lock around these calls.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime
from enum import Enum
from pathlib import Path

from gastown_units.errors import GastownError, ToolError
from gastown_units.ports import procs
from gastown_units.ports.nudge_lock import nudge_lock
from gastown_units.ports.tmux import (
    Pane,
    Snapshot,
    Tmux,
    environment_commands,
    hook_command,
    option_commands,
)
from gastown_units.runtime.events import agent_fields
from gastown_units.runtime.loop import Context
from gastown_units.services.profiles import StartProfile, pane_died_hook
from gastown_units.town.agents import (
    PRESETS,
    SHELLS,
    AgentProgram,
    start_command,
    startup_prompt,
)
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


#: [L]'s fallback process names when a session declares none (2026 §3.5).
DEFAULT_PROCESS_NAMES = ("node", "claude")


def declared_names(process_names: str | None, agent_name: str | None) -> frozenset[str]:
    """The names an [L] session declares itself alive by (2026 §3.5): ``GT_PROCESS_NAMES``
    split on ``,``, else the presets of ``GT_AGENT``, else ``node,claude``; ``agent`` only
    for Cursor.

    >>> sorted(declared_names("codex, agent", None)), sorted(declared_names(None, None))
    (['codex'], ['claude', 'node'])
    """
    names = {n.strip() for n in (process_names or "").split(",") if n.strip()}
    if not names and agent_name and agent_name in PRESETS:
        names = set(PRESETS[agent_name].process_names)
    if not names:
        names = set(DEFAULT_PROCESS_NAMES)
    if "cursor" not in (agent_name or "") and "cursor-agent" not in names:
        names.discard("agent")
    return frozenset(names)


def run_id() -> str:
    """A random (version 4) UUID in its text form, without importing :mod:`uuid` (which
    loads ``platform`` and a C module on every sweep's start).

    >>> text = run_id(); len(text), text[14], text[19] in "89ab", text.count("-")
    (36, '4', True, 4)
    """
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def l_env(agent: AgentProgram) -> dict[str, str]:
    """What [L]'s session layer adds (``MergeRuntimeLivenessEnv``, 2026 §3.3)."""
    env = {"GT_AGENT": agent.name, "GT_RUN": run_id()}
    if agent.process_names:
        env["GT_PROCESS_NAMES"] = ",".join(sorted(agent.process_names))
    return env


class SessionKeeper:
    """Starts, kills and nudges agent sessions on one tmux server."""

    def __init__(self, town: Town, tmux: Tmux, *, start_timeout: float, kill_grace: float
                 ) -> None:
        self.town = town
        self.tmux = tmux
        self.start_timeout = start_timeout
        self.kill_grace = kill_grace
        self._last_nudge: dict[str, float] = {}
        # (session, created, pane PID) -> GT_PROCESS_NAMES, GT_AGENT, GT_PANE_ID
        self._declared: dict[tuple[str, float, int], tuple[str | None, ...]] = {}

    def kill(self, session: str, pane: Pane | None, ctx: Context,
             who: Identity | None = None) -> None:
        """Kill the pane's process tree (deepest first, TERM then KILL), then the session.

        First disarm what would bring the pane back (2026 §3.8): ``remain-on-exit`` and a
        ``pane-died`` respawn hook (an [L] Deacon's or Mayor's); failures are harmless.
        """
        try:
            self.tmux.set_options(session, {"remain-on-exit": "off"})
            self.tmux.unset_hook(session, "pane-died")
        except ToolError as exc:
            log.debug("could not disarm %s before the kill: %s", session, exc)
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
        extra_env = profile.extra_env
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
        if identity.naming.is_l:
            env.update(l_env(agent))
        text = startup_prompt(identity, datetime.now().astimezone()) if profile.beacon else None
        command = start_command(env, agent, text)
        if identity.naming.is_l:
            self._create_l(session, workdir, env, command, ctx)
        else:
            self.tmux.new_session(session, cwd=workdir, command=command)
        log.info("started session %s in %s running %s", session, workdir, agent.argv[0],
                 extra=agent_fields(identity))
        self._finish(identity, env, profile)
        pane = self.wait_for_agent(session, agent, ctx, declared=identity.naming.is_l)
        self.accept_bypass(session, ctx)
        if profile.ready_prompt:
            self.wait_for_prompt(session, profile.ready_prompt, ctx)
        elif profile.ready_delay:
            ctx.sleep(profile.ready_delay)  # no known prompt: the runtime's delay (§3.5)
        if profile.startup_nudge:
            self.nudge(session, profile.startup_nudge, ctx, who=identity)
        return pane

    def _finish(self, identity: Identity, env: dict[str, str], profile: StartProfile) -> None:
        """The pane-died hook (at once, as Gas Town does: before the agent is up), the
        environment (for humans who open a new pane) and the theme: one tmux call; when
        it fails, each again on its own, so that one failure costs only its own part."""
        session = identity.session
        hook = [hook_command(session, "pane-died", pane_died_hook(identity))] \
            if profile.pane_died_hook else []
        theme = option_commands(session, profile.theme.options(session)) \
            if profile.theme else []
        try:
            if identity.naming.is_l:
                env["GT_PANE_ID"] = self.tmux.display(session, "#{pane_id}")
            self.tmux.sequence([*hook, *environment_commands(session, env), *theme])
            return
        except ToolError as exc:
            log.debug("session %s: one-call finish failed (%s): part by part", session, exc)
        try:
            self.tmux.sequence([*environment_commands(session, env), *theme])
        except ToolError as exc:
            log.warning("session %s: environment/theme not set: %s", session, exc,
                        extra=agent_fields(identity))
        if hook:
            try:
                self.tmux.sequence(hook)
            except ToolError as exc:
                log.warning("pane-died hook not set on %s: %s", session, exc,
                            extra=agent_fields(identity))

    def _create_l(self, session: str, workdir: Path, env: dict[str, str], command: str,
                  ctx: Context) -> None:
        """[L]'s sequence (2026 §3.4): ``new-session -e …`` with a shell, window size,
        ``remain-on-exit on``, ``respawn-pane -k`` with the command, a dead pane at 50 and
        250 ms fails the start, then ``remain-on-exit off``."""
        self.tmux.new_session_env(session, cwd=workdir, env=env)
        try:
            self.tmux.set_options(session, {"window-size": "latest", "remain-on-exit": "on"})
            self.tmux.unset_environment(session, "GT_AGENT_READY")
            self.tmux.respawn(session, cwd=workdir, command=command)
            for pause in (0.05, 0.2):
                ctx.sleep(pause)
                if self.tmux.display(session, "#{pane_dead}") == "1":
                    status = self.tmux.display(session, "#{pane_dead_status}")
                    raise StartFailed(f"agent of {session} exited at once (status "
                                      f"{status or '?'}); session removed")
            self.tmux.set_options(session, {"remain-on-exit": "off"})
        except (ToolError, StartFailed):
            self.tmux.kill_session(session)
            raise

    def declared_running(self, session: str, pane: Pane, snap: Snapshot) -> bool | None:
        """[L]'s ``IsAgentAlive`` (2026 §3.5): the session's declared process names on
        its declared pane (``GT_PANE_ID``), the pane's command or a descendant's. None
        when the session declares nothing (or cannot be asked): our own rule judges."""
        key = (session, pane.created, pane.pid)
        declaration = self._declared.get(key)
        if declaration is None:
            try:
                declaration = tuple(self.tmux.show_environment(session, k) for k in
                                    ("GT_PROCESS_NAMES", "GT_AGENT", "GT_PANE_ID"))
            except ToolError as exc:
                log.debug("cannot read the liveness declaration of %s: %s", session, exc)
                return None
            if len(self._declared) > 512:
                self._declared.clear()
            self._declared[key] = declaration
        process_names, agent_name, pane_id = declaration
        if not process_names and agent_name not in PRESETS:
            return None  # no names of its own: [L]'s node,claude guess is not evidence
        names = declared_names(process_names, agent_name)
        target = snap.pane_by_id(session, pane_id) if pane_id else pane
        if target is None or target.dead:
            return False
        if target.command in names:
            return True
        return any(n in names for n in procs.child_names(target.pid))

    def agent_ready(self, session: str) -> bool:
        """``GT_AGENT_READY=1``, set by ``gt prime --hook`` in [L] (2026 §3.5)."""
        try:
            return self.tmux.show_environment(session, "GT_AGENT_READY") == "1"
        except ToolError:
            return False

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

    def wait_for_agent(self, session: str, agent: AgentProgram, ctx: Context, *,
                       declared: bool = False) -> Pane:
        """Poll until the pane runs the agent; on timeout kill the session (§3.5).

        ``declared`` ([L], 2026 §3.5): ``GT_AGENT_READY=1`` in the session, or the
        session's declared process names, also count (asked once a second).
        """
        deadline = time.monotonic() + self.start_timeout
        pane = None
        asked = 0.0
        while True:
            snap = self.tmux.snapshot()
            pane = snap.first_pane(session)
            state = liveness(pane, agent)
            if state is Liveness.RUNNING and pane is not None:
                return pane
            if declared and pane is not None and not pane.dead and \
                    time.monotonic() - asked >= 1.0:
                asked = time.monotonic()
                if self.agent_ready(session) or self.declared_running(session, pane, snap):
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
        with nudge_lock(self.town, session, timeout=min(10.0, self.start_timeout),
                        progress=ctx.progress):
            self._type(session, message, ctx)
        self._last_nudge[session] = time.monotonic()
        log.info("nudged %s: %s", session, message, extra=agent_fields(who) if who else None)
        return True

    def _type(self, session: str, message: str, ctx: Context) -> None:
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

