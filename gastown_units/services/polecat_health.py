"""polecat-health: bring crashed polecats back, in one sweep (§6.5, §6.6, §7).

Run as a oneshot by a tmux event (a session closed) within milliseconds and by a timer as
the safety net. A polecat is crashed when its session is gone, or its pane is dead or runs
a shell (a zombie), while its agent bead still has existing, open work hooked.

Each sweep gathers facts, decides with the pure :func:`polecat_plan.plan_sweep`, then acts.
Gathering takes the lock of every polecat that looks dead (one that another service holds
is left alone, and its death is not booked as a crash) and looks at tmux once more.
Shutdown markers keep polecats shut down on request down until new work is hooked.
Probes are batched: one tmux listing, one ``bd list``, one ``bd show`` per sweep (plus one
listing and one ``bd show`` of the hooked beads when some polecat looks dead), and none
while the beads stores are unchanged (:mod:`bd_cache`; never for a kill). Deaths, mail
incidents and restart backoff persist between sweeps.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gastown_units.config import Settings
from gastown_units.errors import GastownError, ToolError
from gastown_units.ports.argv import is_bead_id, usable_prefixes
from gastown_units.ports.beads import AgentBead, Beads, assigned_work
from gastown_units.ports.mail import Mail
from gastown_units.ports.tmux import ServerDown, Snapshot
from gastown_units.runtime.conditions import Conditions
from gastown_units.runtime.contain import contained
from gastown_units.runtime.events import agent_fields, log_event
from gastown_units.runtime.loop import Context
from gastown_units.runtime.wake import pending_marker
from gastown_units.services import bd_cache
from gastown_units.services.actor import CameBack, OperatorHeld
from gastown_units.services.base import WAITING_FOR_TMUX, TownService, setup_errors
from gastown_units.services.bd_cache import BdReads
from gastown_units.services.polecat_plan import (
    Act,
    Limits,
    PolecatFacts,
    PolecatPlan,
    SweepPlan,
    SweepState,
    plan_sweep,
)
from gastown_units.services.profiles import Reason
from gastown_units.services.restart_tracker import Policy, RestartTracker
from gastown_units.services.rig_gate import label_gate, wisp_gate
from gastown_units.services.sessions import Liveness, liveness
from gastown_units.town.agents import AgentProgram
from gastown_units.town.events import append_event, go_duration
from gastown_units.town.holds import Hold, all_holds
from gastown_units.town.identity import Identity, Role
from gastown_units.town.jsonfile import parse_time
from gastown_units.town.layout import Town
from gastown_units.town.polecats import polecat_names, worktree
from gastown_units.town.rigs import agent_databases, rig_database, rig_prefixes
from gastown_units.town.session_heartbeat import read_session_heartbeat
from gastown_units.town.shutdown_marks import clear_mark
from gastown_units.town.stores import signature, store_dirs
from gastown_units.town.unit_state import load_state, save_state, state_path

log = logging.getLogger(__name__)

# Polecats restarted side by side in one sweep (each start is mostly waiting).
RESTART_WORKERS = 8

MAX_SWEEPS = 5  # sweeps in a row while events keep arriving (then the .path unit's turn)
EVENT_POLL = 0.05  # while waiting for a backoff: how often the pending marker is looked for
STUCK_MARKER_PAUSE = 10.0  # the marker cannot be removed: at most one sweep this often


def triggered() -> bool:
    """Whether systemd started us through the .path or .timer unit (``$TRIGGER_UNIT``,
    systemd ≥ 251), not an operator's ``systemctl start`` or ``--once`` by hand: only then
    may the sweep stay for a backoff (a start by hand returns when its sweep is done)."""
    return bool(os.environ.get("TRIGGER_UNIT"))


class RestartError(GastownError):
    """A crashed polecat could not be restarted (mailed to the witness)."""


class _EventWaits(Exception):  # noqa: N818 - a signal, not an error
    """A tmux event arrived while the cache was being refreshed: stop, exit, sweep."""


class _StaleCache(Exception):  # noqa: N818 - a signal, not an error
    """The sweep judged on cached bd data would act on a polecat whose session exists
    (a zombie or dead pane would be killed): judged again on fresh data."""


@dataclass
class Sweep:
    """Counts for the status line."""

    rigs: int = 0
    polecats: int = 0
    restarted: int = 0
    failed: int = 0
    held: int = 0
    on_hold: int = 0  # held by an operator (gastown-units hold)
    reported: int | None = None  # [L]: crashes reported (never restarted); None in [J]
    notes: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)  # split town: one line each

    def line(self) -> str:
        text = (f"swept {self.polecats} polecat(s) in {self.rigs} rig(s): {self.restarted} "
                f"restarted, {self.failed} failed, {self.held} held back")
        if self.reported is not None:
            text = (f"swept {self.polecats} polecat(s) in {self.rigs} rig(s): "
                    f"{self.reported} crash(es) reported to the witness (never restarted "
                    f"here: an [L] town)")
        if self.on_hold:
            text += f", {self.on_hold} held by an operator"
        split = [self.elsewhere[0]] if self.elsewhere else []
        if len(self.elsewhere) > 1:
            split.append(f"{len(self.elsewhere) - 1} more polecat(s) on other tmux servers")
        return "; ".join([*split, text, *self.notes])


class PolecatHealth(TownService):
    name = "polecat-health"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        s = settings
        self.policy = Policy(s.restart_backoff, s.restart_backoff_max, s.crash_loop_restarts,
                             s.crash_loop_window, s.restart_stable_reset)
        self.limits = Limits(s.gupp_timeout, s.spawn_grace, s.mass_death_count,
                             s.mass_death_window)
        self._marker_stuck = False
        self._backoff_due: float | None = None  # the earliest backoff end the last sweep met

    def setup(self, ctx: Context) -> str:
        with setup_errors():
            town = self.open_town()
            self.rigs = self.load_rigs(town)
            self.prefixes, self.unusable = usable_prefixes(rig_prefixes(town, self.rigs))
            self.agent(Role.POLECAT, None, town=town)
        self.take_town(town)
        self.conditions = Conditions(log)  # told once over many sweeps (runs)
        self.conditions_file = state_path(town, "polecat-health-conditions")
        self.conditions.load(load_state(self.conditions_file))
        for key in [k for k in self.conditions.active if k.startswith("prefix:")]:
            if key.removeprefix("prefix:") not in self.unusable:
                self.conditions.clear(key)
        for rig, why in sorted(self.unusable.items()):
            self.conditions.set(f"prefix:{rig}", f"rig {rig} is not swept: {why}",
                                level=logging.ERROR, fields={"GT_RIG": rig})
        self._save_conditions()
        s = self.settings
        self.beads = Beads(binary=s.bd_bin, cwd=town.root, timeout=s.bd_timeout)
        self.mail = Mail(binary=s.gt_bin, cwd=town.root, timeout=s.gt_timeout)
        self.tracker = RestartTracker(town.daemon_dir / "restart_state.json", self.policy)
        self.state_file = state_path(town, "polecat-health")
        self.cache_file = state_path(town, "polecat-health-bd-cache")
        self._cache_key = repr((self.naming.is_l, sorted(self.prefixes.items())))
        self._on_cache = False  # the current sweep judges on cached bd data
        self._last: tuple[str | None, BdReads] | None = None  # the last sweep's bd reads
        self._wrote = False  # this process wrote to the stores (a mail)
        return f"sweeping polecats of {len(self.rigs)} rig(s) in {town.root}"

    # --- the sweep -----------------------------------------------------------------------
    def tick(self, ctx: Context) -> str:
        """Sweep while tmux events arrive; then, when started by the .path or .timer unit,
        stay for a backoff that ends within ``GT_BACKOFF_WAIT`` and restart it then.

        The tmux hooks create a pending marker that the .path unit's ``PathExists=``
        starts us on; each sweep takes it before it looks at tmux, so an event at any time
        during a sweep, or in the milliseconds after its last look, is swept: by this
        process, or by the next one that systemd starts at once when we exit.
        """
        status = self._sweeps(ctx)
        linger_until = time.monotonic() + self.settings.backoff_wait
        while triggered() and self._backoff_due is not None:
            wake = time.monotonic() + max(0.0, self._backoff_due - time.time()) + 0.05
            if wake > linger_until:
                break
            log.info("a crashed polecat's restart backoff ends in %.1fs: waiting for it",
                     max(0.0, self._backoff_due - time.time()))
            while time.monotonic() < wake and not self._events_arrived(None):
                ctx.sleep(min(EVENT_POLL, wake - time.monotonic()))
            status = self._sweeps(ctx)
        self._warm(ctx)
        return status

    def _sweeps(self, ctx: Context) -> str:
        """One sweep, and more while tmux events arrived during the last one."""
        status = ""
        for _ in range(MAX_SWEEPS):
            seen = self._event_stamp()
            self._take_marker()
            status = self._sweep(ctx)
            if not self._events_arrived(seen):
                return status
            log.info("tmux events arrived during the sweep: sweeping again")
            ctx.progress()
        return status

    def _take_marker(self) -> None:
        """Remove the pending marker before looking at tmux (what it announced is seen)."""
        path = self.settings.event_file
        if path is None:
            return
        try:
            pending_marker(path).unlink(missing_ok=True)
        except OSError as exc:  # systemd would start us again at once: slow that down
            if not self._marker_stuck:
                log.error("cannot remove %s (%s): each sweep now waits %gs before it "
                          "ends; give this unit write access to %s", pending_marker(path),
                          exc.strerror or exc, STUCK_MARKER_PAUSE, path.parent)
            self._marker_stuck = True

    def _events_arrived(self, seen: int | None) -> bool:
        """A tmux event since ``seen`` (the event file's stamp; None: marker only)."""
        path = self.settings.event_file
        if path is None:
            return False
        if not self._marker_stuck and pending_marker(path).exists():
            return True
        return seen is not None and self._event_stamp() != seen

    def _event_stamp(self) -> int | None:
        path = self.settings.event_file
        try:
            return path.stat().st_mtime_ns if path else None
        except OSError:
            return None

    def close(self) -> None:
        if self._marker_stuck:  # bounded: not a busy loop of oneshots
            time.sleep(STUCK_MARKER_PAUSE)
        super().close()

    def _sweep(self, ctx: Context) -> str:
        self._backoff_due = None
        try:
            return self._sweep_once(ctx)
        finally:
            self._save_conditions()

    def _save_conditions(self) -> None:
        if not self.conditions.changed:
            return
        try:
            save_state(self.conditions_file, dict(self.conditions.active))
            self.conditions.changed = False
        except OSError as exc:
            log.error("cannot save %s: %s", self.conditions_file, exc)

    def _sweep_once(self, ctx: Context) -> str:
        paused = self.paused(ctx)
        if paused:
            return paused
        try:
            snap = self.tmux.snapshot()
        except ServerDown:
            return WAITING_FOR_TMUX
        fresh = False
        while True:
            try:
                key, reads = self._bd_reads(fresh)
            except ToolError as exc:  # unknown is not dead: no restarts on missing information
                self.conditions.set("bd", f"bd failed, no polecat is restarted until it "
                                    f"works: {exc}")
                ctx.failed(str(exc))
                return f"bd failed, nothing restarted: {exc}"
            try:
                return self._judge(snap, reads, ctx)
            except _StaleCache:
                log.debug("a polecat to act on has a session: judged again on fresh bd data")
                fresh = True
            finally:
                bd_cache.save(self.cache_file, key, reads)
                self._last = key, reads

    def _bd_reads(self, fresh: bool, between: Callable[[], None] = lambda: None
                  ) -> tuple[str | None, BdReads]:
        """The agent and rig beads: from the cache when the stores are unchanged since it
        was written (and ``fresh`` is not asked), else from bd (``between`` is called
        before each database). Also returns the cache key, from the stores' signature
        taken *before* any read."""
        key = bd_cache.digest(signature(store_dirs(self.town)), self._cache_key)
        reads = None if fresh else bd_cache.load(self.cache_file, key,
                                                  self.settings.fact_max_age)
        if reads is None:
            agents = self._agent_beads(between)
            between()
            rig_beads = self.beads.show_many([f"{p}-rig-{r}" for r, p in self.prefixes.items()])
            reads = BdReads(agents, rig_beads)
        return key, reads

    def _warm(self, ctx: Context) -> None:
        """Before the oneshot exits, and only while no tmux event waits: make the cache
        good for the next event. Read bd again when the stores changed during our sweeps
        because we wrote (a mail), and ask the work of every polecat that has work once,
        so that the next crash is restarted without any bd call. Not in [L] towns: no
        restart is ours there, so no latency to win for the bd calls it costs."""
        if self._last is None or self.naming.is_l:
            return

        def between() -> None:  # an event waits: its sweep must not wait for our reads
            if self._events_arrived(None):
                raise _EventWaits
            ctx.progress()

        key, reads = self._last
        now = bd_cache.digest(signature(store_dirs(self.town)), self._cache_key)
        if now is None:  # a Dolt server: no cache to make good
            return
        try:
            between()
            if now != key:
                if not self._wrote:
                    return
                key, reads = self._bd_reads(True, between)
            wanted = sorted({a.hook_bead for a in reads.agents.values()
                             if is_bead_id(a.hook_bead)} - reads.asked)
            if wanted:
                between()
                reads.add_hooked(wanted, self.beads.show_many(wanted))
        except ToolError as exc:
            log.debug("bd cache not refreshed: %s", exc)
            return
        except _EventWaits:
            log.debug("bd cache not refreshed: a tmux event waits")
            return
        bd_cache.save(self.cache_file, key, reads)

    def _judge(self, snap: Snapshot, reads: BdReads, ctx: Context) -> str:
        self._on_cache = reads.cached
        self.tracker.load()
        state = SweepState.from_json(load_state(self.state_file))
        report = Sweep(reported=0 if self.naming.is_l else None)
        for rig, why in sorted(self.unusable.items()):  # said every sweep until repaired
            report.notes.append(f"rig {rig} not swept: {why}")
            ctx.failed(why)
        try:
            facts = self._gather(snap, reads, report, ctx)
            if facts is None:
                return report.line()
            self.conditions.clear("bd", "bd works again: polecats are judged again")
            now = time.time()
            plan = plan_sweep(facts, state, self.tracker, self.limits, now,
                              report_only=self.naming.is_l,
                              server_started=self._server_started(facts, now))
            self._perform(plan, report, ctx)
        finally:
            self.actor.locks.release_all()
        return report.line()

    def _server_started(self, facts: Sequence[PolecatFacts], now: float) -> float | None:
        """When the tmux server started, asked only when a dead polecat's backoff would
        hold it (one call; a host restart must not make the town wait out backoffs)."""
        if any(f.liveness is not Liveness.RUNNING and f.hook_bead
               and self.tracker.blocked(f.session, now) for f in facts):
            return self.tmux.server_started()
        return None

    def _agent_beads(self, between: Callable[[], None] = lambda: None
                     ) -> dict[str, AgentBead]:
        """Every agent bead of every rig: one listing per database that holds them (the
        rigs' own, where their prefixes route; beads.md §7.6), never truncated."""
        agents: dict[str, AgentBead] = {}
        if self.naming.is_l:
            return self._agent_beads_l()
        for database in agent_databases(self.town, self.prefixes):
            between()
            agents.update((a.id, a) for a in self.beads.at(database).list_agents())
        return agents

    def _agent_beads_l(self) -> dict[str, AgentBead]:
        """[L] §4.1, §4.3: the town DB first (where [L] keeps every agent bead), then the
        rigs' DBs for beads left there by a town upgraded from [J]; one call per database.
        The ``hook_bead`` of a description line is not proof of work (§4.2): only the JSON
        column counts here; work is otherwise derived from assignees (:meth:`_derive_work`).
        """
        agents: dict[str, AgentBead] = {}
        town_db = self.town.root / ".beads"
        databases = [town_db, *[d for d in agent_databases(self.town, self.prefixes)
                                if d != town_db]]
        for database in databases:
            for bead in self.beads.at(database).list_agents_l():
                agents.setdefault(bead.id, replace(bead, hook_bead=bead.hook_column or ""))
        return agents

    def _derive_work(self, dead: list[tuple[Identity, AgentBead]]
                     ) -> tuple[list[tuple[Identity, AgentBead]], dict[str, dict[str, Any]]]:
        """[L] §4.2: the work of dead-looking polecats whose bead has no ``hook_bead``
        column, from ``assignee=<rig>/polecats/<n>`` and status hooked/in_progress: one
        ``bd list`` per rig database that has such a polecat (``--assignee`` takes one name
        only). Returns the polecats with their work filled in, and the work's status."""
        wanted = {str(who.rig) for who, bead in dead if not bead.hook_bead}
        work: dict[str, tuple[str, str]] = {}
        for database in {rig_database(self.town, rig, self.prefixes[rig]): None
                         for rig in sorted(wanted)}:
            work.update(assigned_work(self.beads.at(database).work_in_progress()))
        statuses: dict[str, dict[str, Any]] = {}
        filled: list[tuple[Identity, AgentBead]] = []
        for who, bead in dead:
            if not bead.hook_bead:
                found = work.get(f"{who.rig}/polecats/{who.name}")
                if found is None:
                    filled.append((who, bead))
                    continue
                bead = replace(bead, hook_bead=found[0])
                statuses[found[0]] = {"id": found[0], "status": found[1]}
            filled.append((who, bead))
        return filled, statuses

    # --- gathering facts ------------------------------------------------------------------
    def _gather(self, snap: Snapshot, reads: BdReads, report: Sweep, ctx: Context
                ) -> list[PolecatFacts] | None:
        """Every polecat of every operational rig; locks taken on those that look dead.

        None when ``bd`` failed reading the hooked beads (then nothing is decided).
        _StaleCache when ``reads`` came from the cache and a dead-looking polecat has a
        session: a cache never causes a kill.
        """
        agents, rig_beads = reads.agents, reads.rig_beads
        seen: list[tuple[Identity, AgentBead | None, AgentProgram]] = []
        for rig, prefix in sorted(self.prefixes.items()):
            closed = wisp_gate(self.town, rig) or \
                label_gate(rig_beads.get(f"{prefix}-rig-{rig}"), f"{prefix}-rig-{rig}")
            if closed:
                log.debug("rig %s skipped: %s", rig, closed.reason)
                continue
            try:
                agent = self.agent(Role.POLECAT, rig)
            except ValueError as exc:  # this rig's problem, not the sweep's
                self.conditions.set(f"agent:{rig}", f"rig {rig} not swept: {exc}",
                                    level=logging.ERROR, fields={"GT_RIG": rig})
                report.notes.append(f"rig {rig}: {exc}")
                ctx.failed(str(exc))
                continue
            self.conditions.clear(f"agent:{rig}", f"rig {rig} is swept again",
                                  fields={"GT_RIG": rig})
            report.rigs += 1
            for name in polecat_names(self.town, rig):
                who = self.spelt(Identity(Role.POLECAT, rig, name))
                report.polecats += 1
                seen.append((who, agents.get(str(who.bead_id(prefix))), agent))
        dead = [(who, bead) for who, bead, agent in seen
                if bead is not None and (bead.hook_bead or self.naming.is_l)
                and liveness(snap.first_pane(who.session), agent) is not Liveness.RUNNING]
        derived: dict[str, dict[str, Any]] = {}
        if self.naming.is_l and dead:
            try:
                dead, derived = self._derive_work(dead)
            except ToolError as exc:
                self.conditions.set("bd", f"bd failed reading the polecats' work, no crash "
                                    f"is judged until it works: {exc}")
                ctx.failed(str(exc))
                return None
            beads_now = {who.session: bead for who, bead in dead}
            seen = [(who, beads_now.get(who.session, bead), agent) for who, bead, agent in seen]
            dead = [(who, bead) for who, bead in dead if bead.hook_bead]
        busy = {who.session for who, _ in dead if not self._take_lock(who)}
        fresh = snap
        if len(busy) < len(dead):
            ctx.progress()
            fresh = self.tmux.snapshot()  # a fresh look now that their locks are ours
        if reads.cached and any(view.first_pane(who.session) is not None
                                for view in (snap, fresh) for who, _ in dead):
            raise _StaleCache
        hooked: dict[str, dict[str, Any]] = {}
        if dead:
            # A hook that is no bead ID names no bead: it reads as missing (a STALE_HOOK
            # report, no restart) instead of failing every other polecat's lookup.
            asked = [bead.hook_bead for _, bead in dead
                     if is_bead_id(bead.hook_bead) and bead.hook_bead not in derived]
            try:
                hooked = dict(derived)
                if reads.known(asked):
                    hooked.update((i, reads.hooked[i]) for i in asked if i in reads.hooked)
                else:
                    found = self.beads.show_many(asked)
                    reads.add_hooked(asked, found)
                    hooked.update(found)
            except ToolError as exc:
                self.conditions.set("bd", f"bd failed reading hooked beads, nothing "
                                    f"restarted until it works: {exc}")
                ctx.failed(str(exc))
                return None
        candidates = {who.session for who, _ in dead}
        holds = all_holds(self.town)  # read after the locks: a hold written meanwhile counts
        elsewhere = self._elsewhere(candidates - busy, ctx)
        # Only the candidates are judged on the fresh look: their hooked beads were read.
        facts = [self._facts(who, bead, agent, fresh if who.session in candidates else snap,
                             hooked, who.session in busy, holds.get(who.session))
                 for who, bead, agent in seen]
        if self.naming.is_l:  # §1.5b: a session that ended itself says so (gt done: exiting)
            facts = [replace(f, heartbeat_state=read_session_heartbeat(self.town, f.session)
                             .state) if f.session in candidates else f for f in facts]
        return [replace(f, elsewhere=elsewhere[f.session])
                if f.session in elsewhere and f.liveness is not Liveness.RUNNING else f
                for f in facts]

    def _elsewhere(self, sessions: set[str], ctx: Context) -> dict[str, str]:
        """Dead-looking polecats (locks ours) that run on another tmux server: split town.

        Asked only when some polecat looks dead, each foreign server once per sweep.
        """
        guard = self.actor.guard
        if guard is None or not sessions:
            return {}
        found = guard.check_many(sorted(sessions), progress=ctx.progress)
        return {session: sighting.line() for session, sighting in found.items()}

    def _take_lock(self, who: Identity) -> bool:
        """Take a dead-looking polecat's lock for this sweep; False: leave it alone."""
        try:
            return self.actor.locks.acquire(who.session, "crash sweep")
        except OSError as exc:
            log.error("cannot take the lock of %s (%s): not judging it", who.session, exc,
                      extra=agent_fields(who))
            return False

    def _facts(self, who: Identity, bead: AgentBead | None, agent: AgentProgram,
               snap: Snapshot, hooked: dict[str, dict[str, Any]], busy: bool,
               hold: Hold | None = None) -> PolecatFacts:
        pane = snap.first_pane(who.session)
        state = liveness(pane, agent)
        base = PolecatFacts(who.session, who.address, str(who.rig), str(who.name),
                            str(who.bead_id(self.prefixes[str(who.rig)])), state,
                            pane.created if pane else None, busy=busy, mark=self.actor.mark(who),
                            held=hold.describe() if hold else "",
                            held_incident=hold.incident if hold else "")
        if bead is None:
            return base
        updated = parse_time(bead.updated_at)
        work = hooked.get(bead.hook_bead) if bead.hook_bead else None
        return replace(base, hook_bead=bead.hook_bead, agent_state=bead.agent_state,
                       updated_at=updated.timestamp() if updated else None,
                       hooked_status=str(work.get("status") or "open") if work else None)

    # --- performing the plan -------------------------------------------------------------
    def _perform(self, plan: SweepPlan, report: Sweep, ctx: Context) -> None:
        for step in plan.polecats:
            with contained(f"polecat {step.facts.address}", ctx, _fields(step.facts)):
                self._perform_one(step, plan.state, report, ctx)
        restarts = [s for s in plan.polecats if s.act is Act.RESTART]
        self._restart_all(restarts, report, ctx)
        for step in restarts:  # after: each gt call costs the restart 0.1 s or more
            with contained(f"polecat {step.facts.address}", ctx, _fields(step.facts)):
                self._mail(step, plan.state)
        if plan.mass_death:
            self._mass_death(plan.mass_death)
        self.tracker = plan.tracker
        # at the time of judging: a backoff that ended while the sweep ran still wakes one
        ends = [end for step in plan.polecats if step.act is Act.HOLD
                if (end := self.tracker.backoff_ends(step.facts.session, plan.judged_at))
                is not None]
        self._backoff_due = min(ends, default=None)
        self._save(plan.state)

    def _perform_one(self, step: PolecatPlan, state: SweepState, report: Sweep,
                     ctx: Context) -> None:
        f, where = step.facts, _fields(step.facts)
        for level, text in step.logs:
            log.log(level, "%s", text, extra=where)
        for event, text in step.events:
            log_event(event, "%s", text, fields=where, logger=log)
        if step.clear_mark:
            clear_mark(self.town, f.session)
            log.info("%s has new work or a new session: its shutdown marker is removed",
                     f.session, extra=where)
        if step.act is not Act.RESTART:
            self._mail(step, state)
        if step.act is Act.ELSEWHERE:
            report.elsewhere.append(f.elsewhere)
        elif step.act is Act.HOLD:
            report.held += 1
        elif step.act is Act.ON_HOLD:
            report.on_hold += 1
        elif step.act is Act.REPORT and report.reported is not None:
            report.reported += 1
        if step.session_death:
            self._session_death(f)

    def _mail(self, step: PolecatPlan, state: SweepState) -> None:
        for mailing in step.mails:
            if self._send(mailing.to or f"{step.facts.rig}/witness", mailing.subject,
                          mailing.body):
                state.incidents[mailing.key] = mailing.value

    def _restart_all(self, steps: list[PolecatPlan], report: Sweep, ctx: Context) -> None:
        """Restart these polecats side by side (each under its own lock, taken while
        gathering): a start waits for its agent and its bypass dialog for a second or more,
        so a town whose tmux host restarted would otherwise come back one polecat at a
        time. The counts are kept by this thread; a stop request ends every restart."""
        def one(step: PolecatPlan) -> str:
            with contained(f"polecat {step.facts.address}", ctx, _fields(step.facts)):
                ctx.progress()
                return self._restart_one(step, ctx)
            return "failed"

        if len(steps) <= 1:
            outcomes = [one(step) for step in steps]
        else:
            from concurrent.futures import ThreadPoolExecutor  # only when there are several

            with ThreadPoolExecutor(max_workers=min(RESTART_WORKERS, len(steps)),
                                    thread_name_prefix="restart") as pool:
                outcomes = [job.result() for job in [pool.submit(one, s) for s in steps]]
        for outcome in outcomes:
            if outcome == "restarted":
                report.restarted += 1
            elif outcome == "failed":
                report.failed += 1
            elif outcome == "on_hold":
                report.on_hold += 1

    def _restart_one(self, step: PolecatPlan, ctx: Context) -> str:
        """One restart: "restarted", "failed", "on_hold" or "" (it came back)."""
        f, where = step.facts, _fields(step.facts)
        try:
            outcome = self._restart(step, ctx)
        except OperatorHeld:  # held since the sweep looked (the actor logged it)
            return "on_hold"
        except GastownError as exc:
            ctx.failed(str(exc))
            log.error("restart of %s failed: %s", f.session, exc, extra=where)
            self._send(f"{f.rig}/witness", f"CRASHED_POLECAT: {f.address} restart failed",
                       f"Polecat {f.name} crashed and automatic restart failed.\n\n"
                       f"hook_bead: {f.hook_bead}\nrestart_error: {exc}\n\n"
                       "Manual intervention may be required.")
            return "failed"
        return "restarted" if outcome else ""

    def _restart(self, step: PolecatPlan, ctx: Context) -> bool:
        """(Kill a zombie,) pre-sync and start by the polecat's profile; False if it came back."""
        f = step.facts
        who = self.spelt(Identity(Role.POLECAT, f.rig, f.name))
        if worktree(self.town, f.rig, f.name) is None:
            raise RestartError(f"worktree missing: neither polecats/{f.name}/{f.rig} nor "
                               f"polecats/{f.name} (with .git) exists")
        agent = self.agent(Role.POLECAT, f.rig)
        # No session in the look taken under its lock: nothing to kill, so no new look; a
        # session started since makes tmux refuse ours (CameBack). A kill needs a look now.
        pane = None if f.liveness is Liveness.MISSING else self.actor.pane_now(who)
        if pane is not None and liveness(pane, agent) is Liveness.RUNNING:
            log.info("%s came back while we looked: not restarted", f.session,
                     extra=agent_fields(who))
            return False
        if pane is not None and self._on_cache:  # a cache never causes a kill
            log.info("%s has a session again, judged on cached bd data: not killed, judged "
                     "again next sweep", f.session, extra=agent_fields(who))
            return False
        if pane is not None:
            self.actor.kill(who, pane, ctx)
        try:
            new = self.actor.start(who, agent, ctx, Reason.CRASH, split_checked=True)
        except CameBack:
            log.info("%s came back while we looked: not restarted", f.session,
                     extra=agent_fields(who))
            return False
        log_event("agent-restarted", "restarted %s (pane PID %d)", f.session, new.pid, who=who,
                  logger=log)
        return True

    # --- mail, events, state ----------------------------------------------------------
    def _mass_death(self, sessions: tuple[str, ...]) -> None:
        window = self.settings.mass_death_window
        log_event("mass-death", "MASS DEATH DETECTED: %d sessions died in %s: %s",
                  len(sessions), go_duration(window), list(sessions), logger=log)
        try:
            append_event(self.town, "mass_death", {
                "count": len(sessions), "window": go_duration(window),
                "sessions": list(sessions)})
        except OSError as exc:
            log.error("cannot append to %s: %s", self.town.events, exc)

    def _session_death(self, f: PolecatFacts) -> None:
        """[L] §6.5 ``session_death`` event, once per death."""
        try:
            append_event(self.town, "session_death", {
                "session": f.session, "agent": f"{f.rig}/polecats/{f.name}",
                "reason": "crash detected by daemon health check", "caller": "daemon"},
                actor=f.session)
        except OSError as exc:
            log.error("cannot append to %s: %s", self.town.events, exc)

    def _send(self, to: str, subject: str, body: str) -> bool:
        self._wrote = True  # even a failed send may have written
        try:
            self.mail.send(to, subject, body)
        except GastownError as exc:
            log.error("could not mail %s (%s; retried next sweep if still due): %s", to,
                      subject, exc)
            return False
        return True

    def _save(self, state: SweepState) -> None:
        try:
            self.tracker.save()
            save_state(self.state_file, state.to_json())
        except OSError as exc:
            log.error("cannot save sweep state: %s", exc)


def _fields(f: PolecatFacts) -> dict[str, str]:
    """The journal fields of the polecat ``f`` is about (GT_AGENT, GT_ROLE, GT_RIG)."""
    return agent_fields(Identity(Role.POLECAT, f.rig, f.name))


def clear_backoff(town: Town, session: str, policy: Policy) -> bool:
    """Release an agent from backoff or a crash loop; True if there was anything to clear."""
    tracker = RestartTracker(town.daemon_dir / "restart_state.json", policy)
    tracker.load()
    cleared = tracker.clear(session)
    if cleared:
        tracker.save()
    return cleared

