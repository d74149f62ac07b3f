"""lifecycle-mail: carry out the LIFECYCLE requests mailed to ``deacon/`` (§5.4, §6.8).

A request (subject ``LIFECYCLE: …``) asks to cycle, restart or shut down its *sender*.
Every pass reads the Deacon's inbox and, per request, oldest first:

1. reads the action and the sender; what cannot be read (body, sender, a rig that is not
   in ``rigs.json``) stays in the inbox for a human, with one warning per message;
2. deletes unexecuted a request past ``lifecycle_max_age`` or older than the target's
   session (written before the last start, so already answered);
3. in strict mode, requires ``requesting_<action>: true`` in the agent's ``state.json``;
4. **claims** the request (``gt mail delete``) and only then acts: a request is acted on
   at most once, a failed claim means no action this pass (design rule 4);
5. shutdown kills the session's process tree; cycle and restart (identical, as in Gas
   Town) kill it, pre-sync git checkouts and start the agent again.

Decisions of our own:
- A rig-scoped cycle/restart on a rig that is not operational (parked, docked, …) leaves
  the agent running: the request is deleted with a warning, nothing is killed. Gas Town
  killed first and then refused the start, leaving the rig without its agent.
- The restarted agent gets the startup prompt its keeper gives it: the Deacon, Boot,
  Witness and Refinery their usual beacon (it tells them what to do); mayor, polecats and
  crew the ``<actor> <- daemon • lifecycle-restart`` beacon of Gas Town's restart.
- A start that fails is logged and not retried: the request stays claimed.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gastown_units.config import Settings
from gastown_units.errors import GastownError, ToolError
from gastown_units.ports.beads import Beads
from gastown_units.ports.git import Git
from gastown_units.ports.mail import Mail, Message
from gastown_units.ports.tmux import Pane, ServerDown, Snapshot
from gastown_units.runtime.loop import Context
from gastown_units.services.base import WAITING_FOR_TMUX, TownService
from gastown_units.services.deacon_keeper import DEACON_THEME
from gastown_units.services.lifecycle_parse import (
    Action,
    TooOld,
    confirmed,
    is_lifecycle,
    parse_action,
    state_file,
    too_old,
    without_request,
)
from gastown_units.services.refinery import STARTUP_FALLBACK
from gastown_units.services.rig_gate import Gate, RigGate
from gastown_units.services.sessions import (
    Liveness,
    StartFailed,
    StartOptions,
    Theme,
    liveness,
    rig_theme,
)
from gastown_units.town.agents import AgentProgram
from gastown_units.town.identity import Identity, IdentityParser, Role
from gastown_units.town.jsonfile import read_json, write_json_atomic
from gastown_units.town.layout import Town
from gastown_units.town.rigs import Rig, default_branch, load_rigs, rig_prefixes

log = logging.getLogger(__name__)

INBOX = "deacon/"
MAYOR_THEME = Theme("#3d3200", "#ffd700", "🎩 Mayor")
KILL_SETTLE = 0.5  # Gas Town sleeps 500 ms between the kill and the restart
_PRE_SYNC_ROLES = frozenset({Role.REFINERY, Role.POLECAT, Role.CREW})  # needs_pre_sync


class LifecycleMail(TownService):
    name = "lifecycle-mail"

    mail: Mail
    beads: Beads

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.git = Git(binary=settings.git_bin, timeout=settings.git_timeout)
        self._rigs: dict[str, Rig] = {}
        self._prefixes: dict[str, str] = {}
        self._parser = IdentityParser()
        self._gates: dict[str, RigGate] = {}
        self._rigs_problem: str | None = None
        self._logged: set[tuple[str, str]] = set()  # (message id, what) already logged

    def setup(self, ctx: Context) -> str:
        town = self.open_town()
        rigs = self.load_rigs(town)
        self.take_town(town)
        self._use_rigs(town, rigs)
        s = self.settings
        self.mail = Mail(binary=s.gt_bin, cwd=town.root, timeout=s.gt_timeout)
        self.beads = Beads(binary=s.bd_bin, cwd=town.root, timeout=s.bd_timeout)
        strict = " (strict: requesting_<action> required)" if s.lifecycle_strict else ""
        return f"carrying out LIFECYCLE requests to {INBOX} of {town.root}{strict}"

    def _use_rigs(self, town: Town, rigs: dict[str, Rig]) -> None:
        self._rigs = rigs
        self._prefixes = rig_prefixes(town, rigs)
        self._parser = IdentityParser.for_town(town, rigs, self._prefixes)
        self._gates = {k: v for k, v in self._gates.items() if k in rigs}

    def _reload_rigs(self) -> None:
        """Pick up rigs added since the start; keep the known ones if the file is broken."""
        try:
            rigs = load_rigs(self.town)  # ValueError handled here: a pass, not setup
        except ValueError as exc:
            if str(exc) != self._rigs_problem:
                log.warning("cannot reload the rigs, keeping the %d known: %s",
                            len(self._rigs), exc)
            self._rigs_problem = str(exc)
            return
        self._rigs_problem = None
        if rigs != self._rigs:
            self._use_rigs(self.town, rigs)

    # --- one pass -------------------------------------------------------------------------
    def tick(self, ctx: Context) -> str:
        paused = self.paused()
        if paused:
            return paused
        try:
            messages = self.mail.inbox(INBOX)
        except GastownError as exc:
            log.warning("cannot read the %s inbox, acting on nothing: %s", INBOX, exc)
            ctx.failed(str(exc))
            return f"inbox unreadable, nothing done: {exc}"
        present = {m.id for m in messages}
        self._logged = {key for key in self._logged if key[0] in present}
        requests = [m for m in messages if not m.read and is_lifecycle(m.subject)]
        if not requests:
            return "inbox empty" if not messages else \
                f"inbox: no lifecycle requests ({len(messages)} other message(s))"
        try:
            snap = self.tmux.snapshot()
        except ServerDown:
            return WAITING_FOR_TMUX
        self._reload_rigs()
        outcomes: Counter[str] = Counter()
        for message in reversed(requests):  # the inbox lists newest first
            ctx.progress()
            outcome = self._handle_safely(message, snap, ctx)
            outcomes[outcome] += 1
            if outcome in ("done", "failed"):
                snap = self.tmux.snapshot()  # sessions changed: later requests see that
        parts = ", ".join(f"{count} {what}" for what, count in outcomes.items())
        return f"inbox: {len(requests)} lifecycle request(s): {parts}"

    def _handle_safely(self, message: Message, snap: Snapshot, ctx: Context) -> str:
        """One request; a tool failure ends it, not the pass."""
        try:
            return self._handle(message, snap, ctx)
        except GastownError as exc:
            log.error("LIFECYCLE request %s not finished: %s", message.id, exc)
            ctx.failed(str(exc))
            return "failed"

    def _handle(self, message: Message, snap: Snapshot, ctx: Context) -> str:
        """Decide, claim, act; returns the outcome for the status line."""
        action = self._action(message)
        if action is None:
            return "left (unparseable)"
        who = self._requester(message)
        if who is None:
            return "left (unknown sender)"
        pane = snap.first_pane(who.session)
        old = self._too_old(message, who, pane)
        if old is not None:
            return self._drop(message, who, old, ctx)
        if self.settings.lifecycle_strict and not self._confirmed(message, who, action):
            return "left (not confirmed)"
        if action is Action.SHUTDOWN:
            if not self._claim(message, who, action, ctx):
                return "left (claim failed)"
            return self._shutdown(who, pane, _committed(ctx))
        return self._restart(message, who, action, pane, ctx)

    # --- reading a request -------------------------------------------------------------
    def _once(self, message: Message, what: str, level: int, text: str, *args: Any,
              who: Identity | None = None) -> None:
        """Log ``text`` once per message: unread requests come back every pass."""
        if (message.id, what) in self._logged:
            return
        self._logged.add((message.id, what))
        extra = {"GT_AGENT": who.address} if who else None
        log.log(level, text, *args, extra=extra)

    def _action(self, message: Message) -> Action | None:
        try:
            return parse_action(message.body)
        except ValueError as exc:
            self._once(message, "action", logging.WARNING,
                       "LIFECYCLE request %s from %r (%r) not understood: %s; left in the inbox",
                       message.id, message.sender, message.subject, exc)
            return None

    def _requester(self, message: Message) -> Identity | None:
        """The sender, in any spelling; a rig must be one of ``rigs.json``."""
        try:
            who = self._parser.parse(message.sender)
        except ValueError as exc:
            self._once(message, "sender", logging.WARNING,
                       "LIFECYCLE request %s: %s; left in the inbox", message.id, exc)
            return None
        if who.rig is not None and who.rig not in self._rigs:
            self._once(message, "sender", logging.WARNING,
                       "LIFECYCLE request %s from %s: rig %r is not in %s; left in the inbox",
                       message.id, message.sender, who.rig, self.town.rigs_json, who=who)
            return None
        return who

    def _too_old(self, message: Message, who: Identity, pane: Pane | None) -> TooOld | None:
        if message.timestamp is None:
            self._once(message, "timestamp", logging.INFO,
                       "LIFECYCLE request %s from %s has no readable timestamp: "
                       "treated as fresh", message.id, who.address, who=who)
        created = pane.created if pane is not None else None
        return too_old(message.timestamp, datetime.now(UTC), self.settings.lifecycle_max_age,
                       created)

    def _drop(self, message: Message, who: Identity, old: TooOld, ctx: Context) -> str:
        """Delete an expired or stale request without acting on it."""
        where = {"GT_AGENT": who.address}
        try:
            self.mail.delete(message.id)
        except GastownError as exc:
            log.warning("%s LIFECYCLE request %s could not be deleted (retried next pass): %s",
                        old.kind, message.id, exc, extra=where)
            ctx.failed(str(exc))
            return "left (delete failed)"
        log.info("deleted %s LIFECYCLE request %s from %s without acting: %s", old.kind,
                 message.id, who.address, old.detail, extra=where)
        return old.kind

    # --- strict mode (requesting_<action>, [D] §1.9) ------------------------------------
    def _state_path(self, who: Identity) -> Path:
        return state_file(self.town, who.role, who.rig, who.workdir(self.town))

    def _confirmed(self, message: Message, who: Identity, action: Action) -> bool:
        path = self._state_path(who)
        try:
            state = read_json(path)
        except (ValueError, OSError) as exc:
            state, why = None, f"unreadable ({exc})"
        else:
            why = "missing" if state is None else f"without {action.flag}: true"
        if confirmed(state, action):
            return True
        self._once(message, "strict", logging.WARNING,
                   "strict mode: %s requested %s, but %s is %s; request %s left in the inbox",
                   who.address, action, path, why, message.id, who=who)
        return False

    def _clear_request(self, who: Identity, action: Action) -> None:
        """Remove ``requesting_<action>`` and ``requesting_time`` once the request is done."""
        path = self._state_path(who)
        try:
            state = read_json(path)
            if isinstance(state, dict):
                write_json_atomic(path, without_request(state, action), 0o644)
        except (ValueError, OSError) as exc:
            log.warning("cannot clear %s in %s: %s", action.flag, path, exc,
                        extra={"GT_AGENT": who.address})

    # --- acting ------------------------------------------------------------------------
    def _claim(self, message: Message, who: Identity, action: Action, ctx: Context) -> bool:
        """Delete the request before acting on it; False (and no action) if that fails."""
        where = {"GT_AGENT": who.address}
        try:
            self.mail.delete(message.id)
        except GastownError as exc:
            log.error("cannot claim LIFECYCLE request %s (%s of %s): %s; not acting, "
                      "retried next pass", message.id, action, who.address, exc, extra=where)
            ctx.failed(str(exc))
            return False
        log.info("claimed LIFECYCLE request %s: %s of %s", message.id, action, who.address,
                 extra=where)
        return True

    def _shutdown(self, who: Identity, pane: Pane | None, ctx: Context) -> str:
        where = {"GT_AGENT": who.address}
        if pane is None:
            log.info("%s asked to shut down but is not running: nothing to do", who.address,
                     extra=where)
            return "done"
        try:
            self.keeper.kill(who.session, pane, ctx)
        except ToolError as exc:
            log.error("shutdown of %s failed: %s", who.session, exc, extra=where)
            ctx.failed(str(exc))
            return "failed"
        log.info("shut down %s on its request", who.session, extra=where)
        return "done"

    def _restart(self, message: Message, who: Identity, action: Action, pane: Pane | None,
                 ctx: Context) -> str:
        where = {"GT_AGENT": who.address}
        try:
            agent = self.agent(who.role, who.rig)
        except ValueError as exc:
            log.error("cannot %s %s: %s; request %s left in the inbox", action, who.address,
                      exc, message.id, extra=where)
            ctx.failed(str(exc))
            return "left (configuration problem)"
        gate = self._gate(who)
        if not self._claim(message, who, action, ctx):
            return "left (claim failed)"
        if not gate.operational:
            log.warning("%s requested %s, but rig %s is not operational (%s): request "
                        "deleted, agent left as it is", who.address, action, who.rig,
                        gate.reason, extra=where)
            return "refused (rig not operational)"
        ctx = _committed(ctx)
        if pane is not None:
            try:
                self.keeper.kill(who.session, pane, ctx)
            except ToolError as exc:
                log.error("%s of %s failed: cannot stop %s (request claimed, not retried): "
                          "%s", action, who.address, who.session, exc, extra=where)
                ctx.failed(str(exc))
                return "failed"
            ctx.sleep(KILL_SETTLE)
        self._pre_sync(who, ctx)
        try:
            new = self.keeper.start(who, agent, ctx, self._options(who, agent), prompt=True)
        except (StartFailed, ToolError) as exc:
            if self._running_now(who, agent):
                log.info("%s is running again (started by its keeper meanwhile)",
                         who.session, extra=where)
                return "done"
            log.error("%s of %s failed (request claimed, not retried): %s", action,
                      who.address, exc, extra=where)
            ctx.failed(str(exc))
            return "failed"
        log.info("%s of %s done: %s running (pane PID %d)", action, who.address, who.session,
                 new.pid, extra=where)
        if self.settings.lifecycle_strict:
            self._clear_request(who, action)
        return "done"

    def _gate(self, who: Identity) -> Gate:
        """Rig agents restart only on an operational rig (§2); town agents always."""
        if who.rig is None:
            return Gate(True)
        gate = self._gates.get(who.rig)
        if gate is None:
            prefix = self._prefixes.get(who.rig, "gt")
            gate = self._gates[who.rig] = RigGate(self.town, self.beads, who.rig, prefix)
        return gate.check()

    def _pre_sync(self, who: Identity, ctx: Context) -> None:
        """``git fetch`` + ``pull --rebase`` of a checkout before its agent starts; never fatal."""
        if who.role not in _PRE_SYNC_ROLES:
            return
        workdir = who.workdir(self.town)
        if not workdir.is_dir():
            return  # the start says so clearly
        where = {"GT_AGENT": who.address}
        branch = default_branch(self.town, str(who.rig))
        ctx.progress()
        problems = self.git.pre_sync(workdir, branch)
        ctx.progress()
        for problem in problems:
            log.warning("pre-sync of %s: %s", workdir, problem, extra=where)
        if not problems:
            log.info("pre-synced %s with origin/%s", workdir, branch, extra=where)

    def _options(self, who: Identity, agent: AgentProgram) -> StartOptions:
        """Theme and start extras, as the role's own keeper uses them."""
        if who.role is Role.MAYOR:
            return StartOptions(theme=MAYOR_THEME)
        if who.role is Role.DEACON:
            return StartOptions(theme=DEACON_THEME)
        if who.role is Role.BOOT:
            return StartOptions()
        if who.role is Role.REFINERY:
            return StartOptions(theme=rig_theme(who), ready_prompt=self.settings.ready_prompt,
                                startup_nudge=None if agent.name == "claude"
                                else STARTUP_FALLBACK)
        return StartOptions(theme=rig_theme(who))

    def _running_now(self, who: Identity, agent: AgentProgram) -> bool:
        """After a failed start: did another keeper (witness@, …) start the agent meanwhile?"""
        try:
            pane = self.tmux.snapshot().first_pane(who.session)
        except GastownError:
            return False
        return liveness(pane, agent) is Liveness.RUNNING


def _committed(ctx: Context) -> Context:
    """The pass's context minus stop requests: a claimed request is carried out to the end.

    Stopping between the kill and the start of a cycle would leave the agent dead with its
    request already deleted; the start is bounded by ``start_timeout`` and still feeds the
    watchdog. The next request of the pass sees the stop request as usual.
    """
    return Context(ctx.notifier, lambda: False, ctx.failures)
