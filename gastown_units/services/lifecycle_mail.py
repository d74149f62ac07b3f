"""lifecycle-mail: carry out the LIFECYCLE requests mailed to ``deacon/`` (§5.4, §6.8).

A request (subject ``LIFECYCLE: …``) asks to cycle, restart or shut down its *sender*.
Every pass reads the Deacon's inbox and, per request, oldest first:

1. gathers the facts (action, sender, age, the target's session, strict-mode state, the
   rig's state) and decides with the pure :func:`lifecycle_parse.decide`; what cannot be
   read (body, sender, a rig that is not in ``rigs.json``) stays in the inbox for a
   human, with one warning per message, and so does a request whose rig state cannot be
   read now (a ``bd`` failure is "unknown", never "drop");
2. deletes unexecuted a request past ``lifecycle_max_age`` or older than the target's
   session (written before the last start, so already answered);
3. takes the agent's lock (another service acting on it: the request waits), looks at the
   session again and decides again, so a keeper's restart in between makes it stale;
4. **claims** the request (``gt mail delete``) and only then acts: a request is acted on
   at most once, a failed claim means no action this pass (design rule 4);
5. shutdown writes the agent's shutdown marker (keepers and polecat-health keep it down)
   and kills the session's process tree; cycle and restart (identical, as in Gas Town)
   kill it and start it again by its start profile (pre-sync, hook, ready wait, …).

Decisions of our own:
- A rig-scoped cycle/restart on a rig that is not operational (parked, docked, …) leaves
  the agent running: the request is deleted with a warning, nothing is killed. Gas Town
  killed first and then refused the start, leaving the rig without its agent.
- The restarted agent gets the startup prompt its keeper gives it: the Deacon, Boot,
  Witness and Refinery their usual beacon (it tells them what to do); mayor, polecats and
  crew the ``<actor> <- daemon • lifecycle-restart`` beacon of Gas Town's restart.
- A start that fails is logged and not retried: the request stays claimed.
- A request for an agent an operator holds (``gastown-units hold``) is neither carried out
  nor lost: it stays in the inbox (logged once) until the release, then it is decided
  afresh (expired or older than the session by then: deleted unexecuted).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gastown_units.config import Settings
from gastown_units.errors import GastownError, ToolError
from gastown_units.ports.beads import Beads
from gastown_units.ports.mail import Mail, Message
from gastown_units.ports.tmux import Pane, ServerDown, Snapshot
from gastown_units.runtime.conditions import Conditions
from gastown_units.runtime.contain import contained
from gastown_units.runtime.events import agent_fields, log_event
from gastown_units.runtime.facts import Cached
from gastown_units.runtime.loop import Context
from gastown_units.runtime.wake import Watched
from gastown_units.services.actor import BUSY_RETRY, OperatorHeld
from gastown_units.services.base import (
    WAITING_FOR_TMUX,
    TownService,
    setup_errors,
    store_watches,
)
from gastown_units.services.lifecycle_parse import (
    Action,
    Decision,
    RequestFacts,
    Verdict,
    confirmed,
    decide,
    is_lifecycle,
    parse_action,
    state_file,
    too_old,
    without_request,
)
from gastown_units.services.profiles import Reason
from gastown_units.services.rig_gate import Gate, RigGate
from gastown_units.services.sessions import StartFailed
from gastown_units.services.split_town import Elsewhere
from gastown_units.town.agents import AgentProgram
from gastown_units.town.identity import Identity, IdentityParser, Role
from gastown_units.town.jsonfile import read_json, write_json_atomic
from gastown_units.town.layout import Town
from gastown_units.town.rigs import Rig, load_rigs, rig_database, rig_prefixes
from gastown_units.town.stores import signature

log = logging.getLogger(__name__)

INBOX = "deacon/"
_DOING = {Action.CYCLE: "cycling", Action.RESTART: "restarting",
          Action.SHUTDOWN: "shutting down"}


class LifecycleMail(TownService):
    name = "lifecycle-mail"

    mail: Mail
    beads: Beads

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._rigs: dict[str, Rig] = {}
        self._prefixes: dict[str, str] = {}
        self._parser = IdentityParser()
        self._gates: dict[str, RigGate] = {}
        self._rigs_problem: str | None = None
        self._logged: set[tuple[str, str]] = set()  # (message id, what) already logged
        self.conditions = Conditions(log)  # told when they start and when they end

    def setup(self, ctx: Context) -> str:
        with setup_errors():
            town = self.open_town()
            rigs = self.load_rigs(town)
            rig_prefixes(town, rigs)  # .beads/routes.jsonl readable
        self.take_town(town)
        self._use_rigs(town, rigs)
        s = self.settings
        self.mail = Mail(binary=s.gt_bin, cwd=town.root, timeout=s.gt_timeout)
        self.beads = Beads(binary=s.bd_bin, cwd=town.root, timeout=s.bd_timeout)
        self._inbox: Cached[list[Message]] = Cached(s.fact_max_age)
        strict = " (strict: requesting_<action> required)" if s.lifecycle_strict else ""
        return f"carrying out LIFECYCLE requests to {INBOX} of {town.root}{strict}"

    def _use_rigs(self, town: Town, rigs: dict[str, Rig]) -> None:
        self._rigs = rigs
        self._prefixes = rig_prefixes(town, rigs)
        self.rename_rigs(rigs)
        self._parser = IdentityParser.for_town(town, rigs, self._prefixes, self.naming)
        self._gates = {k: v for k, v in self._gates.items() if k in rigs}

    def _reload_rigs(self) -> None:
        """Pick up rigs added since the start; keep the known ones if the file is broken."""
        try:
            rigs = load_rigs(self.town)  # ValueError handled here: a pass, not setup
            if rigs != self._rigs:
                self._use_rigs(self.town, rigs)
        except ValueError as exc:
            if str(exc) != self._rigs_problem:
                log.warning("cannot reload the rigs, keeping the %d known: %s",
                            len(self._rigs), exc)
            self._rigs_problem = str(exc)
            return
        self._rigs_problem = None

    # --- one pass -------------------------------------------------------------------------
    def watched(self) -> list[Watched]:
        """Also the town's store, where mail arrives (a request is seen within seconds)."""
        return [*super().watched(), *store_watches(self.town_stores())]

    def tick(self, ctx: Context) -> str:
        if ctx.reloaded:
            self._inbox.forget()
            for gate in self._gates.values():
                gate.forget()
        paused = self.paused(ctx)
        if paused:
            return paused
        try:
            messages = self._inbox.get(signature(self.town_stores()),
                                       lambda: self.mail.inbox(INBOX))
        except GastownError as exc:
            self.conditions.set("inbox", f"cannot read the {INBOX} inbox, acting on nothing: "
                                f"{exc}")
            ctx.failed(str(exc))
            return f"inbox unreadable, nothing done: {exc}"
        self.conditions.clear("inbox", f"the {INBOX} inbox is readable again")
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
        stale = f"; rigs not reloaded: {self._rigs_problem}" if self._rigs_problem else ""
        return f"inbox: {len(requests)} lifecycle request(s): {parts}{stale}"

    def _handle_safely(self, message: Message, snap: Snapshot, ctx: Context) -> str:
        """One request; a failure ends it, not the pass."""
        outcome = "failed"
        with contained(f"LIFECYCLE request {message.id}", ctx):
            outcome = self._handle(message, snap, ctx)
        return outcome

    def _handle(self, message: Message, snap: Snapshot, ctx: Context) -> str:
        """Gather the facts, decide, then (under the agent's lock) claim and act."""
        action = self._action(message)
        who = self._requester(message) if action is not None else None
        if action is None or who is None:
            return decide(self._facts(message, action, who, None)).outcome
        facts = self._facts(message, action, who, snap.first_pane(who.session))
        decision = decide(facts)
        if decision.verdict is Verdict.LEAVE:
            return decision.outcome
        if decision.verdict is Verdict.DROP:
            return self._drop(message, who, decision, ctx)
        with self.actor.hold(who, f"{action} ({message.id})") as mine:
            if not mine:
                self._once(message, "busy", logging.INFO, "LIFECYCLE request %s: %s is being "
                           "acted on by %s; retried next pass", message.id, who.session,
                           self.actor.busy_with(who), who=who)
                ctx.retry_in(BUSY_RETRY)
                return "left (agent busy)"
            pane = self.actor.pane_now(who)  # a keeper may have restarted it meanwhile
            decision = decide(replace(facts, session_created=pane.created if pane else None))
            if decision.verdict is Verdict.DROP:
                return self._drop(message, who, decision, ctx)
            hold = self.actor.operator_hold(who, _DOING[action])
            if hold is not None:  # not acted on and not lost: it waits for the release
                self._once(message, "held", logging.INFO, "LIFECYCLE request %s (%s of %s) "
                           "left in the inbox: %s is %s", message.id, action, who.address,
                           who.session, hold.describe(), who=who)
                return "left (held by an operator)"
            if not self._claim(message, who, action, ctx):
                return "left (claim failed)"
            if decision.verdict is Verdict.REFUSE:
                log.warning("%s requested %s, but rig %s is not operational (%s): request "
                            "deleted, agent left as it is", who.address, action, who.rig,
                            facts.rig_reason, extra=agent_fields(who))
                return decision.outcome
            if action is Action.SHUTDOWN:
                return self._shutdown(message, who, pane, _committed(ctx))
            return self._restart(who, action, pane, _committed(ctx))

    def _facts(self, message: Message, action: Action | None, who: Identity | None,
               pane: Pane | None) -> RequestFacts:
        """What the decision needs; reads only what this request's action makes relevant."""
        base = RequestFacts(action, who is not None, message.timestamp, datetime.now(UTC),
                            self.settings.lifecycle_max_age,
                            pane.created if pane is not None else None,
                            strict=self.settings.lifecycle_strict)
        if action is None or who is None:
            return base
        if message.timestamp is None:
            self._once(message, "timestamp", logging.INFO,
                       "LIFECYCLE request %s from %s has no readable timestamp: "
                       "treated as fresh", message.id, who.address, who=who)
        if too_old(base.sent, base.now, base.max_age, base.session_created):
            return base  # dropped whatever else holds
        confirmed = self._confirmed(message, who, action) if base.strict else False
        if action is Action.SHUTDOWN:
            return replace(base, confirmed=confirmed)
        agent_ok = self._agent(message, who, action) is not None
        gate = self._gate(who)
        if gate.unknown:
            self._once(message, "gate", logging.WARNING,
                       "LIFECYCLE request %s (%s of %s) left for the next pass: %s",
                       message.id, action, who.address, gate.reason, who=who)
        return replace(base, confirmed=confirmed, agent_ok=agent_ok,
                       rig_operational=gate.operational, rig_unknown=gate.unknown,
                       rig_reason=gate.reason)

    def _agent(self, message: Message, who: Identity, action: Action) -> AgentProgram | None:
        try:
            return self.agent(who.role, who.rig)
        except ValueError as exc:
            self._once(message, "agent", logging.ERROR,
                       "cannot %s %s: %s; request %s left in the inbox", action, who.address,
                       exc, message.id, who=who)
            return None

    # --- reading a request -------------------------------------------------------------
    def _once(self, message: Message, what: str, level: int, text: str, *args: Any,
              who: Identity | None = None) -> None:
        """Log ``text`` once per message: unread requests come back every pass."""
        if (message.id, what) in self._logged:
            return
        self._logged.add((message.id, what))
        extra = agent_fields(who) if who else None
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

    def _drop(self, message: Message, who: Identity, decision: Decision, ctx: Context) -> str:
        """Delete an expired or stale request without acting on it."""
        where = agent_fields(who)
        old = decision.old
        assert old is not None
        try:
            self.mail.delete(message.id)
        except GastownError as exc:
            log.warning("%s LIFECYCLE request %s could not be deleted (retried next pass): %s",
                        old.kind, message.id, exc, extra=where)
            ctx.failed(str(exc))
            return "left (delete failed)"
        log_event("stale-request-dropped", "deleted %s LIFECYCLE request %s from %s without "
                  "acting: %s", old.kind, message.id, who.address, old.detail, who=who,
                  logger=log)
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
                        extra=agent_fields(who))

    # --- acting ------------------------------------------------------------------------
    def _claim(self, message: Message, who: Identity, action: Action, ctx: Context) -> bool:
        """Delete the request before acting on it; False (and no action) if that fails."""
        where = agent_fields(who)
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

    def _shutdown(self, message: Message, who: Identity, pane: Pane | None, ctx: Context
                  ) -> str:
        """Mark the agent as shut down on request (keepers honour it), then kill it."""
        where = agent_fields(who)
        try:
            self.actor.shutdown(who, pane, ctx, by=INBOX, hook_bead=self._hook_of(who),
                                request=message.id)
        except OperatorHeld as exc:  # held between our look and the claim: not acted on
            log.warning("LIFECYCLE request %s claimed, but not carried out: %s", message.id,
                        exc, extra=where)
            return "held"
        except ToolError as exc:
            log.error("shutdown of %s failed: %s", who.session, exc, extra=where)
            ctx.failed(str(exc))
            return "failed"
        if pane is None:
            log.info("%s asked to shut down but is not running: kept down", who.address,
                     extra=where)
        else:
            log_event("shutdown-done", "shut down %s on its request; it stays down until "
                      "started again", who.session, who=who, logger=log)
        return "done"

    def _hook_of(self, who: Identity) -> str | None:
        """A polecat's hooked work at its shutdown (None when unknown or not a polecat)."""
        bead_id = who.bead_id(self._prefixes.get(str(who.rig), "gt"))
        if who.role is not Role.POLECAT or bead_id is None:
            return None
        try:
            if self.naming.is_l:  # [L] §4.1, §4.2: town DB, then routing; work by assignee
                rig = str(who.rig)
                return self.beads.polecat_hook_l(
                    bead_id, f"{rig}/polecats/{who.name}", self.town.root / ".beads",
                    rig_database(self.town, rig, self._prefixes.get(rig, "gt")))
            bead = self.beads.agent(bead_id)
        except GastownError:
            return None
        return bead.hook_bead if bead else ""

    def _restart(self, who: Identity, action: Action, pane: Pane | None, ctx: Context) -> str:
        where = agent_fields(who)
        agent = self.agent(who.role, who.rig)  # resolved when the request was decided
        try:
            new = self.actor.restart(who, agent, pane, ctx, Reason.LIFECYCLE)
        except OperatorHeld as exc:  # held between our look and the claim: not acted on
            log.warning("%s of %s claimed, but not carried out: %s", action, who.address,
                        exc, extra=where)
            return "held"
        except (StartFailed, ToolError, Elsewhere) as exc:
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
            gate = self._gates[who.rig] = RigGate(
                self.town, self.beads, who.rig, prefix, max_age=self.settings.fact_max_age)
        return gate.check()


def _committed(ctx: Context) -> Context:
    """The pass's context minus stop requests: a claimed request is carried out to the end.

    Stopping between the kill and the start of a cycle would leave the agent dead with its
    request already deleted; the start is bounded by ``start_timeout`` and still feeds the
    watchdog. The next request of the pass sees the stop request as usual.
    """
    return Context(ctx.notifier, lambda: False, ctx.failures)
