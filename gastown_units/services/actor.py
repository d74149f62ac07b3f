"""The one way any service acts on an agent: under its lock, on a fresh look, once.

Five processes share the agents (design rule 9). Whatever a service does to an agent —
keep it alive, restart it after a crash, cycle it on request, shut it down — goes through
an :class:`AgentActor`, which

- takes the agent's lock (:mod:`gastown_units.ports.agent_locks`) for the whole sequence,
  and leaves the agent alone when another service holds it;
- looks at tmux again once it holds the lock, since the caller's snapshot may be stale;
- honours shutdown markers (:mod:`gastown_units.town.shutdown_marks`): an agent shut down
  on request is not brought back by a keeper or a crash sweep;
- starts every role by its start profile (:mod:`gastown_units.services.profiles`): pre-sync,
  theme, beacon, ready wait, startup nudge and pane-died hook are the same whichever
  service starts it;
- starts nothing that already runs on another tmux server of this user (a split town,
  :mod:`gastown_units.services.split_town`): asked only when a start is due;
- never starts, restarts, kills or shuts down an agent an operator holds
  (:mod:`gastown_units.town.holds`, ``gastown-units hold AGENT``): the hold file is read
  fresh after the lock is taken, right before acting; a damaged hold file holds. A held
  agent is logged once per hold and is no failure of the pass (:class:`OperatorHeld`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from gastown_units.errors import GastownError, ToolError
from gastown_units.ports.agent_locks import AgentLocks
from gastown_units.ports.git import Git
from gastown_units.ports.tmux import Pane, SessionExists, Snapshot, Tmux
from gastown_units.runtime.events import agent_fields, log_event
from gastown_units.runtime.loop import Context
from gastown_units.services.profiles import Reason, start_profile
from gastown_units.services.sessions import Liveness, SessionKeeper, liveness
from gastown_units.services.split_town import Elsewhere, SplitTownGuard
from gastown_units.town.agents import AgentProgram
from gastown_units.town.holds import Hold, read_hold
from gastown_units.town.identity import J_NAMING, Identity, Naming
from gastown_units.town.layout import Town
from gastown_units.town.rigs import default_branch
from gastown_units.town.shutdown_marks import (
    ShutdownMark,
    clear_mark,
    mark_path,
    read_mark,
    write_mark,
)

log = logging.getLogger(__name__)

KILL_SETTLE = 0.5  # Gas Town sleeps 500 ms between the kill and the restart
BUSY_RETRY = 1.0  # seconds until work left for an agent another service held is retried


class CameBack(GastownError):
    """The session exists again before our start (started outside our services)."""


class OperatorHeld(GastownError):
    """An operator holds the agent (``gastown-units hold``): nothing was done to it.

    Not a failure of the pass: callers catch it before GastownError and say so."""

    def __init__(self, who: Identity, hold: Hold, doing: str) -> None:
        super().__init__(f"{who.session} is {hold.describe()}: not {doing} it")
        self.hold = hold


class Kept(StrEnum):
    """What :meth:`AgentActor.keep` found or did."""

    RUNNING = "running"  # left alone
    STARTED = "started"  # was missing or a zombie; started
    BUSY = "busy"  # another service is acting on it: left alone this pass
    HELD = "held"  # shut down on request: kept down
    ELSEWHERE = "elsewhere"  # runs (or may run) on another tmux server: not started here
    ON_HOLD = "on hold"  # an operator holds it (gastown-units hold): not started or killed


@dataclass(frozen=True)
class KeepResult:
    outcome: Kept
    pane: Pane | None
    detail: str = ""


class AgentActor:
    """Kill, start, restart and shut down agents: one sequence at a time per agent."""

    def __init__(self, town: Town, tmux: Tmux, keeper: SessionKeeper, git: Git,
                 locks: AgentLocks, *, ready_prompt: str | None,
                 guard: SplitTownGuard | None = None, naming: Naming = J_NAMING) -> None:
        self.town = town
        self.naming = naming  # every identity is spelt the town's way before it is used
        self.tmux = tmux
        self.keeper = keeper
        self.git = git
        self.locks = locks
        self.ready_prompt = ready_prompt
        self.guard = guard
        self._split: dict[str, str] = {}  # session -> split-town line already logged
        self._held: dict[str, str] = {}  # session -> hold incident already logged

    def judge(self, who: Identity, pane: Pane | None, agent: AgentProgram, snap: Snapshot
              ) -> Liveness:
        """The keepers' liveness rule; in an [L] town a session's own declaration
        (``GT_PROCESS_NAMES``/``GT_AGENT`` on ``GT_PANE_ID``, 2026 §3.5) decides."""
        state = liveness(pane, agent)
        if pane is None or not who.naming.is_l or pane.dead:
            return state
        declared = self.keeper.declared_running(who.session, pane, snap)
        if declared is None:
            return state
        return Liveness.RUNNING if declared else Liveness.ZOMBIE

    def spelt(self, who: Identity) -> Identity:
        """``who`` as this town spells it."""
        return who.in_town(self.naming)

    @contextmanager
    def hold(self, who: Identity, action: str) -> Iterator[bool]:
        """The agent's lock for a whole sequence; yields False when another service has it.

        A lock that cannot be taken for another reason (the lock directory is unusable)
        raises ToolError: nothing is done unlocked.
        """
        who = who.in_town(self.naming)
        session = who.session
        if self.locks.held(session):
            yield True  # re-entrant: the outer hold releases it
            return
        try:
            mine = self.locks.acquire(session, action)
        except OSError as exc:
            raise ToolError(f"cannot take the lock of {session}: {exc}") from None
        if not mine:
            log.debug("%s is being acted on by %s: skipped this pass", session,
                      self.busy_with(who), extra=agent_fields(who))
        try:
            yield mine
        finally:
            if mine:
                self.locks.release(session)

    def busy_with(self, who: Identity) -> str:
        who = who.in_town(self.naming)
        return self.locks.holder_of(who.session) or "another service"

    def pane_now(self, who: Identity) -> Pane | None:
        """A fresh look at the agent's session (after taking its lock)."""
        who = who.in_town(self.naming)
        return self.tmux.snapshot().first_pane(who.session)

    # --- shutdown markers ----------------------------------------------------------------
    def mark(self, who: Identity) -> ShutdownMark | None:
        who = who.in_town(self.naming)
        return read_mark(self.town, who.session)

    def forget_mark_if_restarted(self, who: Identity, pane: Pane | None) -> None:
        """A session newer than the shutdown marker was started on purpose: forget it."""
        who = who.in_town(self.naming)
        if pane is None or not mark_path(self.town, who.session).exists():
            return
        mark = self.mark(who)
        if mark is not None and not mark.holds(session_created=pane.created):
            clear_mark(self.town, who.session)
            log.info("%s was started again after its shutdown: shutdown marker removed",
                     who.session, extra=agent_fields(who))

    # --- operator holds ------------------------------------------------------------------
    def operator_hold(self, who: Identity, doing: str = "acting on") -> Hold | None:
        """The operator's hold of ``who``, read fresh (call it under the agent's lock).

        Logged once per hold (a new hold is a new incident), and once when it is over.
        """
        who = who.in_town(self.naming)
        try:
            hold = read_hold(self.town, who.session)
        except OSError as exc:  # unreadable: never act on missing information
            hold = Hold(who.session, "?", None, "", damaged=str(exc))
        if hold is None:
            if self._held.pop(who.session, None) is not None:
                log_event("agent-released", "%s is no longer held by an operator",
                          who.session, who=who, logger=log)
            return None
        if self._held.get(who.session) != hold.incident:
            log_event("agent-held", "%s is %s: not %s it (`gastown-units release %s` to "
                      "resume)", who.session, hold.describe(), doing, who.address, who=who,
                      logger=log)
            self._held[who.session] = hold.incident
        return hold

    def refuse_if_held(self, who: Identity, doing: str) -> None:
        """Raise OperatorHeld when an operator holds ``who``."""
        who = who.in_town(self.naming)
        hold = self.operator_hold(who, doing)
        if hold is not None:
            raise OperatorHeld(who, hold, doing)

    def kill(self, who: Identity, pane: Pane | None, ctx: Context) -> None:
        """Kill the agent's session (its process tree first); the caller holds its lock."""
        who = who.in_town(self.naming)
        assert self.locks.held(who.session), f"kill of {who.session} without its lock"
        self.refuse_if_held(who, "killing")
        self.keeper.kill(who.session, pane, ctx, who)

    # --- keeping an agent alive ----------------------------------------------------------
    def keep(self, who: Identity, agent: AgentProgram, snap: Snapshot, ctx: Context
             ) -> KeepResult:
        """Leave a running agent alone; kill a zombie; start a missing one — under its lock.

        Raises StartFailed or ToolError when the start does not work out.
        """
        who = who.in_town(self.naming)
        pane = snap.first_pane(who.session)
        if self.judge(who, pane, agent, snap) is Liveness.RUNNING:
            self.forget_mark_if_restarted(who, pane)
            self.split_over(who, "it runs on our server now")
            return KeepResult(Kept.RUNNING, pane)
        with self.hold(who, "keep") as mine:
            if not mine:
                return KeepResult(Kept.BUSY, pane, f"{who.session}: {self.busy_with(who)}")
            now = self.tmux.snapshot()
            pane = now.first_pane(who.session)
            state = self.judge(who, pane, agent, now)
            if state is Liveness.RUNNING:
                return KeepResult(Kept.RUNNING, pane)
            doing = "killing" if state is Liveness.ZOMBIE else "starting"
            hold = self.operator_hold(who, doing)
            if hold is not None:
                return KeepResult(Kept.ON_HOLD, pane, hold.describe())
            mark = self.mark(who)
            if mark is not None:
                if mark.holds(session_created=pane.created if pane else None):
                    return KeepResult(Kept.HELD, pane, mark.describe())
                clear_mark(self.town, who.session)
            where = agent_fields(who)
            try:
                self.check_split(who, ctx)  # before anything is said or done
            except Elsewhere as exc:
                return KeepResult(Kept.ELSEWHERE, pane, str(exc))
            if state is Liveness.ZOMBIE and pane is not None:
                log.warning("%s is a zombie (pane %s): killing and recreating", who.session,
                            "is dead" if pane.dead else f"runs {pane.command!r}", extra=where)
                self.keeper.kill(who.session, pane, ctx, who)
            else:
                log.warning("%s is not running: starting it", who.session, extra=where)
            try:
                new = self.start(who, agent, ctx, Reason.KEEP, split_checked=True)
            except CameBack:
                return KeepResult(Kept.RUNNING, self.pane_now(who))
            log_event("agent-restarted", "%s running (pane PID %d)", who.session, new.pid,
                      who=who, logger=log)
            return KeepResult(Kept.STARTED, new)

    # --- sequences (the caller holds the agent's lock) -----------------------------------
    def start(self, who: Identity, agent: AgentProgram, ctx: Context, reason: Reason, *,
              split_checked: bool = False) -> Pane:
        """Pre-sync, start and finish the session by the role's start profile.

        Raises Elsewhere, before touching the worktree, when the agent runs on another
        tmux server (a split town).
        """
        who = who.in_town(self.naming)
        assert self.locks.held(who.session), f"start of {who.session} without its lock"
        self.refuse_if_held(who, "starting")
        if not split_checked:
            self.check_split(who, ctx)
        profile = start_profile(who, agent, reason=reason, ready_prompt=self.ready_prompt)
        if profile.pre_sync:
            self.pre_sync(who, ctx)
        ctx.progress()
        try:
            return self.keeper.start(who, agent, ctx, profile)
        except SessionExists:
            if not profile.pre_sync:
                raise
            # Started by somebody else during the pre-sync (tmux refuses a second session of
            # the name in the same step that would create it: no has-session race).
            raise CameBack(f"{who.session} exists again (started meanwhile)") from None

    def check_split(self, who: Identity, ctx: Context) -> None:
        """Raise Elsewhere if the agent runs on another tmux server; log that once."""
        who = who.in_town(self.naming)
        if self.guard is None:
            return
        names = [who.session]
        if who.naming.is_l:  # a [J] copy left on another server (a town upgraded in place)
            names.append(who.in_town(J_NAMING).session)
        found = self.guard.check_many(names, progress=ctx.progress)
        sighting = next((found[n] for n in names if n in found), None)
        if sighting is None:
            self.split_over(who, "it runs on no other tmux server")
            return
        line = sighting.line()
        if self._split.get(who.session) != line:
            log.warning("%s", line, extra=agent_fields(who))
            self._split[who.session] = line
        raise Elsewhere(sighting)

    def split_over(self, who: Identity, why: str) -> None:
        """The split-town incident of ``who`` (if one was logged) has ended."""
        who = who.in_town(self.naming)
        if self._split.pop(who.session, None) is not None:
            log.info("split town over for %s: %s", who.session, why,
                     extra=agent_fields(who))

    def restart(self, who: Identity, agent: AgentProgram, pane: Pane | None, ctx: Context,
                reason: Reason) -> Pane:
        """Kill (if running), settle, clear any shutdown marker, start again.

        In a split town the kill of our copy stands and the start raises Elsewhere: the
        copy on the other server stays the only one. A held agent: OperatorHeld, untouched.
        """
        who = who.in_town(self.naming)
        assert self.locks.held(who.session), f"restart of {who.session} without its lock"
        self.refuse_if_held(who, "restarting")
        if pane is not None:
            self.keeper.kill(who.session, pane, ctx, who)
            ctx.sleep(KILL_SETTLE)
        clear_mark(self.town, who.session)
        return self.start(who, agent, ctx, reason)

    def shutdown(self, who: Identity, pane: Pane | None, ctx: Context, *, by: str,
                 hook_bead: str | None, request: str = "") -> None:
        """Mark the agent as shut down on request, then kill it (if running).

        The marker comes first: a sweep woken by the session closing sees it.
        """
        who = who.in_town(self.naming)
        assert self.locks.held(who.session), f"shutdown of {who.session} without its lock"
        self.refuse_if_held(who, "shutting down")
        try:
            write_mark(self.town, who.session, by=by, hook_bead=hook_bead, request=request)
        except OSError as exc:
            raise ToolError(f"cannot record the shutdown of {who.session} ({exc}): "
                            "not killing it") from None
        if pane is not None:
            self.keeper.kill(who.session, pane, ctx, who)

    def pre_sync(self, who: Identity, ctx: Context) -> None:
        """``git fetch`` + ``pull --rebase`` of the checkout; never fatal (§6.5 step 3)."""
        who = who.in_town(self.naming)
        workdir = who.workdir(self.town)
        if who.rig is None or not (workdir / ".git").exists():
            return  # not a checkout (yet): the start says so if it must be one
        branch = default_branch(self.town, who.rig)
        where = agent_fields(who)
        problems = self.git.pre_sync(workdir, branch, progress=ctx.progress)
        for problem in problems:
            log.warning("pre-sync of %s: %s (starting anyway)", workdir, problem, extra=where)
        if not problems:
            log.info("pre-synced %s with origin/%s", workdir, branch, extra=where)
