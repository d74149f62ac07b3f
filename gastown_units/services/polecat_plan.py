"""The polecat sweep's decisions, as a pure function of what the sweep saw (§6.5, §6.6, §7).

polecat-health gathers facts (tmux, agent beads, hooked beads, locks, shutdown markers),
calls :func:`plan_sweep`, then performs the plan. Keeping the decisions pure lets them be
tested over whole sequences of sweeps: a crash loop stops restarts, three deaths make one
mass-death event, GUPP is mailed once per bead, nothing restarts while another service acts
on a polecat or after it was shut down on request.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from gastown_units.services.restart_tracker import RestartTracker, stamp
from gastown_units.services.sessions import Liveness
from gastown_units.town.events import go_duration
from gastown_units.town.shutdown_marks import ShutdownMark

GONE_STATUSES = frozenset({"tombstone", "deleted"})
FINISHED_STATES = frozenset({"done", "nuked"})


@dataclass(frozen=True)
class PolecatFacts:
    """One polecat as the sweep saw it."""

    session: str
    address: str  # <rig>/<name>
    rig: str
    name: str
    bead_id: str
    liveness: Liveness
    session_created: float | None = None
    hook_bead: str = ""
    agent_state: str = ""
    updated_at: float | None = None  # agent bead's updated_at, epoch seconds
    hooked_status: str | None = None  # status of the hooked bead; None: bd has no such bead
    busy: bool = False  # another service holds the polecat's lock
    mark: ShutdownMark | None = None
    elsewhere: str = ""  # it runs on another tmux server (a split town): why, in one line
    held: str = ""  # an operator holds it (gastown-units hold): the hold, in one line
    held_incident: str = ""  # identifies that hold (logged once per hold)
    heartbeat_state: str = ""  # [L] .runtime/heartbeats/<session>.json state; "" unknown


@dataclass(frozen=True)
class Limits:
    gupp_timeout: float = 1800.0
    spawn_grace: float = 300.0
    mass_death_count: int = 3
    mass_death_window: float = 30.0


@dataclass
class SweepState:
    """What the sweep remembers between runs (``daemon/units/polecat-health.json``)."""

    incidents: dict[str, str] = field(default_factory=dict)  # mail key -> value sent once
    dead: dict[str, str] = field(default_factory=dict)  # session -> hook of a counted death
    deaths: list[tuple[float, str]] = field(default_factory=list)  # the mass-death window

    @classmethod
    def from_json(cls, data: Any) -> SweepState:
        """Typed state from the saved JSON; entries of the wrong type are dropped."""
        data = data if isinstance(data, dict) else {}

        def strings(value: Any) -> dict[str, str]:
            items = value.items() if isinstance(value, dict) else ()
            return {str(k): v for k, v in items if isinstance(v, str)}

        def when(value: Any) -> float | None:
            if not isinstance(value, int | float) or isinstance(value, bool):
                return None
            try:
                seconds = float(value)
            except OverflowError:
                return None
            return seconds if math.isfinite(seconds) else None

        raw = data.get("deaths")
        deaths = [(t, d[1]) for d in (raw if isinstance(raw, list) else [])
                  if isinstance(d, list) and len(d) == 2 and isinstance(d[1], str)
                  and (t := when(d[0])) is not None]
        return cls(strings(data.get("incidents")), strings(data.get("dead")), deaths)

    def to_json(self) -> dict[str, Any]:
        return {"incidents": dict(self.incidents), "dead": dict(self.dead),
                "deaths": [[t, s] for t, s in self.deaths]}


class Act(StrEnum):
    NOTHING = "nothing"
    RESTART = "restart"
    HOLD = "hold"  # would restart, but backoff or a crash loop holds it back
    ELSEWHERE = "elsewhere"  # runs on another tmux server (split town): not dead, not ours
    ON_HOLD = "on hold"  # an operator holds it: not judged, not restarted, not killed
    REPORT = "report"  # [L]: a crash to report (event, mail); never restarted by us


@dataclass(frozen=True)
class Mailing:
    """A mail sent once per incident (``key`` → ``value``): to ``to``, or (empty) to the
    polecat's Witness."""

    key: str
    value: str
    subject: str
    body: str
    to: str = ""


@dataclass(frozen=True)
class PolecatPlan:
    facts: PolecatFacts
    act: Act = Act.NOTHING
    kill_first: bool = False  # a zombie pane is killed before the restart
    clear_mark: bool = False  # a shutdown marker that no longer holds
    mails: tuple[Mailing, ...] = ()
    logs: tuple[tuple[int, str], ...] = ()
    events: tuple[tuple[str, str], ...] = ()  # (event name, text): logged with a MESSAGE_ID
    session_death: bool = False  # [L]: append a session_death event (once per death)


@dataclass(frozen=True)
class SweepPlan:
    polecats: tuple[PolecatPlan, ...]
    state: SweepState  # to save once the plan is performed
    tracker: RestartTracker  # likewise
    mass_death: tuple[str, ...] = ()  # sessions of a mass death to report (an event)
    judged_at: float = 0.0  # the time the plan was made: a backoff held then ends later


def plan_sweep(facts: Sequence[PolecatFacts], state: SweepState, tracker: RestartTracker,
               limits: Limits, now: float, *, report_only: bool = False,
               server_started: float | None = None) -> SweepPlan:
    """Decide every polecat of one sweep; ``state`` and ``tracker`` are not changed.

    The returned plan carries the new state and tracker to save once it is performed.
    ``report_only`` ([L] towns, gastown-2026.md §6.5): crashes are reported, never
    restarted; the witness and Gas Town's stuck-agent-dog restart polecats there.
    ``server_started``: when the tmux server started, if known; a polecat whose last
    restart came before it died with the old server, so its backoff does not hold it and
    its restart is not booked as one more crash.
    """
    new_state = copy.deepcopy(state)
    new_tracker = copy.deepcopy(tracker)
    plans: list[PolecatPlan] = []
    mass: tuple[str, ...] = ()
    for polecat in facts:
        plan, died = _plan_one(polecat, new_state, new_tracker, limits, now, report_only,
                               server_started)
        if died:
            mass = _count_death(polecat, new_state, limits, now) or mass
        plans.append(plan)
    return SweepPlan(tuple(plans), new_state, new_tracker, mass, judged_at=now)


def _plan_one(f: PolecatFacts, state: SweepState, tracker: RestartTracker, limits: Limits,
              now: float, report_only: bool = False, server_started: float | None = None
              ) -> tuple[PolecatPlan, bool]:
    """One polecat's plan, and whether a new death is to be counted.

    A polecat an operator holds is not judged at all: no death, no mail, no restart, no
    kill, one line per hold. A polecat on another tmux server (split town) is neither dead
    nor ours: no death, no mail, no restart, and its one line is logged once per incident.
    """
    held = f"held:{f.session}"
    if f.held:
        said = state.incidents.get(held) == f.held_incident
        state.incidents[held] = f.held_incident
        text = f"{f.session} is {f.held}: not restarted or killed"
        return PolecatPlan(f, Act.ON_HOLD,
                           logs=() if said else ((logging.WARNING, text),)), False
    released = state.incidents.pop(held, None) is not None
    plan, died = _plan_unheld(f, state, tracker, limits, now, report_only, server_started)
    if released:
        over = (logging.INFO, f"{f.session} is no longer held by an operator")
        plan = replace(plan, logs=(over, *plan.logs))
    return plan, died


def _plan_unheld(f: PolecatFacts, state: SweepState, tracker: RestartTracker, limits: Limits,
                 now: float, report_only: bool = False, server_started: float | None = None
                 ) -> tuple[PolecatPlan, bool]:
    split = f"split:{f.session}"
    if f.elsewhere:
        said = state.incidents.get(split) == f.elsewhere
        state.incidents[split] = f.elsewhere
        return PolecatPlan(f, Act.ELSEWHERE,
                           logs=() if said else ((logging.WARNING, f.elsewhere),)), False
    plan, died = (_plan_reported(f, state, tracker, limits, now) if report_only else
                  _plan_judged(f, state, tracker, limits, now, server_started))
    if state.incidents.pop(split, None) is not None:
        over = (logging.INFO, f"split town over for {f.session}: not on another tmux server")
        plan = replace(plan, logs=(over, *plan.logs))
    return plan, died


def _plan_judged(f: PolecatFacts, state: SweepState, tracker: RestartTracker, limits: Limits,
                 now: float, server_started: float | None = None
                 ) -> tuple[PolecatPlan, bool]:
    plan = PolecatPlan(f)
    if f.liveness is Liveness.RUNNING:
        return _alive(f, plan, state, tracker, limits, now), False
    if not f.hook_bead:
        return plan, False  # an orphan without work: the witness's business
    if f.busy:
        return replace(plan, logs=((logging.DEBUG, f"{f.session} is being acted on by "
                                    "another service: left alone this sweep"),)), False
    if f.agent_state in FINISHED_STATES:
        return plan, False
    if f.hooked_status is None or f.hooked_status in GONE_STATUSES:
        return _gone_work(f, plan, state), False
    if f.hooked_status == "closed":
        return replace(plan, logs=((logging.INFO, f"{f.session} is dead but its hooked bead "
                                    f"{f.hook_bead} is closed: not restarted"),)), False
    if f.agent_state == "spawning" and f.updated_at is not None and \
            now - f.updated_at < limits.spawn_grace:
        return plan, False  # still being spawned by gt sling
    if f.mark is not None:
        if f.mark.holds(session_created=f.session_created, hook_bead=f.hook_bead,
                        bead_updated=f.updated_at):
            return replace(plan, logs=((logging.DEBUG, f"{f.session} was "
                                        f"{f.mark.describe()}: kept down"),)), False
        plan = replace(plan, clear_mark=True)
    mails = [_orphaned(f)]
    new_death = state.dead.get(f.session) != f.hook_bead
    if new_death:
        state.dead[f.session] = f.hook_bead
    logs: list[tuple[int, str]] = []
    events: list[tuple[str, str]] = []
    policy = tracker.policy
    loop = go_duration(policy.loop_window)
    if tracker.loops_now(f.session, now):
        events.append(("crash-loop", f"CRASH LOOP: {f.session} restarted {policy.loop_count} "
                       f"times within {loop}: restarts stopped; release with "
                       f"`gastown-units clear-backoff {f.address}`"))
        mails.append(Mailing(f"loop:{f.session}", f.hook_bead,
                             f"CRASH_LOOP: {f.address} restarts stopped",
                             f"Polecat {f.name} was restarted {policy.loop_count} times "
                             f"within {loop} and crashed again.\n\nhook_bead: "
                             f"{f.hook_bead}\n\nRestarts are stopped until "
                             f"`gastown-units clear-backoff {f.address}`."))
    since = tracker.loop_since(f.session)
    if since is not None:  # mayor/ is told once per crash loop, retried until it is
        mails.append(Mailing(f"mayor-loop:{f.session}", stamp(since),
                             f"CRASH_LOOP: {f.address} restarts stopped",
                             f"Polecat {f.address} was restarted {policy.loop_count} times "
                             f"within {loop} and crashed again; automatic restarts are stopped.\n\n"
                             f"hook_bead: {f.hook_bead}\n\nFind why it dies, then run "
                             f"`gastown-units clear-backoff {f.address}`.", to="mayor/"))
    mails = [m for m in mails if state.incidents.get(m.key) != m.value]
    blocked = tracker.blocked(f.session, now)
    with_server = tracker.loop_since(f.session) is None and \
        tracker.before_server(f.session, server_started)
    if blocked and with_server:
        logs.append((logging.INFO, f"{f.session} ended with the tmux server, which started "
                     "after its last restart: its restart backoff does not hold it"))
        blocked = None
    if blocked:
        logs.append((logging.INFO, f"{f.session} is dead with work hooked; not restarted "
                     f"now ({blocked})"))
        return replace(plan, act=Act.HOLD, mails=tuple(mails), logs=tuple(logs),
                       events=tuple(events)), new_death
    logs.append((logging.WARNING, f"CRASH DETECTED: polecat {f.address} has hook_bead="
                 f"{f.hook_bead} but session {f.session} is "
                 f"{'a zombie' if f.liveness is Liveness.ZOMBIE else 'dead'}"))
    if with_server:  # the old server's end is no crash of the polecat's own
        tracker.restarted_with_server(f.session, now)
    else:
        tracker.record(f.session, now)
    return replace(plan, act=Act.RESTART, kill_first=f.liveness is Liveness.ZOMBIE,
                   mails=tuple(mails), logs=tuple(logs), events=tuple(events)), new_death


QUIET_HEARTBEATS = frozenset({"exiting", "idle"})  # [L] §1.5b: it ends itself or rests


def crashed_mail(f: PolecatFacts) -> Mailing:
    """[L] §5.5 ``CRASHED_POLECAT … detected`` (once per death: keyed by session and work)."""
    return Mailing(f"crashed:{f.session}", f.hook_bead,
                   f"CRASHED_POLECAT: {f.address} detected",
                   f"Polecat {f.name} crash detected (session dead, work on hook).\n\n"
                   f"hook_bead: {f.hook_bead}\n\n"
                   "Restart deferred to stuck-agent-dog plugin for context-aware recovery.")


def _plan_reported(f: PolecatFacts, state: SweepState, tracker: RestartTracker,
                   limits: Limits, now: float) -> tuple[PolecatPlan, bool]:
    """[L] ``checkRigPolecatHealth`` (§6.5): report a crash once per death, never restart.

    Not a crash: no work; done or nuked; a heartbeat saying ``exiting`` or ``idle`` (a
    clean ``gt done`` kills its own session, §5.6); work closed or gone; spawning < 5 min;
    shut down on request; another service acting on it right now.
    """
    plan = PolecatPlan(f)
    if f.liveness is Liveness.RUNNING:
        state.incidents.pop(f"crashed:{f.session}", None)
        return _alive(f, plan, state, tracker, limits, now), False
    quiet = ""
    if not f.hook_bead:
        quiet = "no work"
    elif f.busy:
        return replace(plan, logs=((logging.DEBUG, f"{f.session} is being acted on by "
                                    "another service: left alone this sweep"),)), False
    elif f.agent_state in FINISHED_STATES:
        quiet = f"agent_state {f.agent_state}"
    elif f.heartbeat_state in QUIET_HEARTBEATS:
        quiet = f"heartbeat {f.heartbeat_state}"
    elif f.hooked_status is None or f.hooked_status in GONE_STATUSES or \
            f.hooked_status == "closed":
        quiet = f"work {f.hook_bead} {f.hooked_status or 'missing'}"
    elif f.agent_state == "spawning" and (f.updated_at is None or
                                          now - f.updated_at < limits.spawn_grace):
        quiet = "still spawning"
    elif f.mark is not None and f.mark.holds(session_created=f.session_created,
                                             hook_bead=f.hook_bead, bead_updated=f.updated_at):
        quiet = f"{f.mark.describe()}"
    if quiet:
        return replace(plan, logs=((logging.DEBUG, f"{f.session} is not running: not a "
                                    f"crash ({quiet})"),)), False
    new_death = state.dead.get(f.session) != f.hook_bead
    if new_death:
        state.dead[f.session] = f.hook_bead
    mail = crashed_mail(f)
    mails = () if state.incidents.get(mail.key) == mail.value else (mail,)
    logs: tuple[tuple[int, str], ...] = ()
    if new_death:
        logs = ((logging.WARNING, f"CRASH DETECTED: polecat {f.address} has work {f.hook_bead} "
                 f"but session {f.session} is "
                 f"{'a zombie' if f.liveness is Liveness.ZOMBIE else 'dead'}; not restarted "
                 "here (an [L] town: the witness and stuck-agent-dog restart polecats)"),)
    return replace(plan, act=Act.REPORT, mails=mails, logs=logs,
                   session_death=new_death), new_death


def _alive(f: PolecatFacts, plan: PolecatPlan, state: SweepState, tracker: RestartTracker,
           limits: Limits, now: float) -> PolecatPlan:
    """A running polecat: forget its death and orphan incident; GUPP; stability."""
    state.dead.pop(f.session, None)
    state.incidents.pop(f"orphaned:{f.session}", None)
    state.incidents.pop(f"gone:{f.session}", None)
    if tracker.loop_since(f.session) is None:
        state.incidents.pop(f"mayor-loop:{f.session}", None)
    logs: list[tuple[int, str]] = []
    if tracker.stable(f.session, now):
        logs.append((logging.INFO, f"{f.session} stable again: restart backoff cleared"))
    clear = f.mark is not None and not f.mark.holds(session_created=f.session_created)
    mails: tuple[Mailing, ...] = ()
    key = f"gupp:{f.bead_id}"
    age = now - f.updated_at if f.updated_at is not None else 0.0
    if not f.hook_bead or age <= limits.gupp_timeout:
        state.incidents.pop(key, None)
    elif state.incidents.get(key) != f.hook_bead:
        duration = go_duration(age, round_to_minute=True)
        mails = (Mailing(key, f.hook_bead, f"GUPP_VIOLATION: {f.bead_id} stuck for {duration}",
                         f"Agent {f.bead_id} has work on hook but isn't progressing.\n\n"
                         f"hook_bead: {f.hook_bead}\nstuck_duration: {duration}\n\n"
                         "Action needed: Check if agent is alive and responsive. "
                         "Consider restarting if stuck."),)
    return replace(plan, clear_mark=clear, mails=mails, logs=tuple(logs))


def _orphaned(f: PolecatFacts) -> Mailing:
    return Mailing(f"orphaned:{f.session}", f.hook_bead,
                   f"ORPHANED_WORK: {f.bead_id} has hooked work but is dead",
                   f"Agent {f.bead_id} is dead but has work on its hook.\n\n"
                   f"hook_bead: {f.hook_bead}\n\nAction needed: Either restart the agent or "
                   "reassign the work.")


def _gone_work(f: PolecatFacts, plan: PolecatPlan, state: SweepState) -> PolecatPlan:
    """The hooked bead does not exist (or is a tombstone): no restart, reported once."""
    what = "does not exist" if f.hooked_status is None else f"is a {f.hooked_status}"
    key = f"gone:{f.session}"
    if state.incidents.get(key) == f.hook_bead:
        return plan
    text = (f"{f.session} is dead and its hooked bead {f.hook_bead} {what}: not restarted "
            "(Gas Town validates the issue before every polecat start)")
    mail = Mailing(key, f.hook_bead, f"STALE_HOOK: {f.bead_id} hooks {f.hook_bead}, which {what}",
                   f"Polecat {f.name} is dead and its hook_bead {f.hook_bead} {what}, so it "
                   "was not restarted.\n\nAction needed: clear the hook "
                   f"(bd slot clear {f.bead_id} hook) or hook existing work.")
    return replace(plan, mails=(mail,), logs=((logging.WARNING, text),))


def _count_death(f: PolecatFacts, state: SweepState, limits: Limits, now: float
                 ) -> tuple[str, ...]:
    """Count a death in the sliding window; the sessions of a mass death, once."""
    window = limits.mass_death_window
    deaths = [(t, s) for t, s in state.deaths if now - t <= window]
    deaths.append((now, f.session))
    if len(deaths) >= limits.mass_death_count:
        state.deaths = []
        return tuple(s for _, s in deaths)
    state.deaths = deaths
    return ()
