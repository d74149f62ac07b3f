"""deacon-keeper: keep the Deacon alive, run Boot, watch the Deacon's heartbeat (§6.3).

One pass, in Gas Town's order: skip while ``gt down`` holds ``daemon/shutdown.lock``; skip
when ``patrols.deacon.enabled`` is false; ensure ``hq-deacon`` (a zombie is killed and
recreated); ensure Boot (``gt-boot``), or triage mechanically in degraded mode; check the
heartbeat: nudge at >= 15 min, kill and restart at > 30 min, never within 5 min of a start.

An [L] town (gastown-2026.md §6.3, §6.10, §6.12): the thresholds are [L]'s (settings
``for_dialect``): kill at >= 20 min, nudge from 5 min only while some store has an
``in_progress`` bead, a heartbeat older than the session's start is waited out for the
grace; and ``daemon/restart_state.json`` key ``deacon`` is honoured before every restart
(backoff, crash loop until ``gt daemon clear-backoff deacon``) and updated after one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from gastown_units.config import Settings
from gastown_units.errors import GastownError, ToolError
from gastown_units.ports.beads import Beads
from gastown_units.ports.tmux import Pane, Snapshot
from gastown_units.runtime.conditions import Conditions
from gastown_units.runtime.contain import contained
from gastown_units.runtime.events import agent_fields, log_event
from gastown_units.runtime.facts import Cached
from gastown_units.runtime.loop import Context
from gastown_units.runtime.wake import Watched, session_token
from gastown_units.services.actor import BUSY_RETRY, Kept, OperatorHeld
from gastown_units.services.base import TownService, setup_errors
from gastown_units.services.profiles import Reason
from gastown_units.services.sessions import Liveness, StartFailed, liveness
from gastown_units.services.split_town import Elsewhere
from gastown_units.town.agents import AgentProgram
from gastown_units.town.daemon_state import DaemonState, state_file
from gastown_units.town.deacon_files import BootStatus, now_utc, read_heartbeat, write_boot_status
from gastown_units.town.identity import Role
from gastown_units.town.jsonfile import DamagedFile, read_json_object
from gastown_units.town.restart_state import (
    CLEAR_COMMAND,
    TrackerPolicy,
    read_deacon,
    tracker_policy,
    write_deacon,
)
from gastown_units.town.rigs import agent_databases, load_rigs, rig_prefixes
from gastown_units.town.stores import resolve_store, signature

log = logging.getLogger(__name__)

HEALTH_CHECK = "HEALTH_CHECK: heartbeat stale, respond to confirm responsiveness"


@dataclass
class PassReport:
    """What one pass did, for the status line and Boot's status file."""

    actions: list[tuple[str, str]] = field(default_factory=list)  # (last_action, target)
    notes: list[str] = field(default_factory=list)
    split: str = ""  # the Deacon runs on another tmux server: why nothing was started
    deacon_held: bool = False  # an operator holds the Deacon: Boot's triage is not ours

    def did(self, action: str, target: str) -> None:
        self.actions.append((action, target))


class DeaconKeeper(TownService):
    name = "deacon-keeper"
    patrol = "deacon"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.conditions = Conditions(log)  # told when they start and when they end
        self._last_boot_spawn: float | None = None
        self._held_logged: str | None = None
        self._blocked_logged: str | None = None
        self._policy_logged = ""  # the last problem with patrols.restart_tracker logged
        self._state: DaemonState | None = None
        self._state_error = ""  # the last failure to write daemon/state.json logged
        # Work in progress somewhere, by the stores' look.
        self._wip: Cached[bool] = Cached(settings.fact_max_age)
        self._heartbeat_stale = False  # the last pass found it stale: watch for a new one

    def setup(self, ctx: Context) -> str:
        with setup_errors():
            town = self.open_town()
            self.agent(Role.DEACON, town=town)
        self.take_town(town)
        self._state = DaemonState(datetime.now().astimezone())
        return f"keeping {self.deacon.session} for town {town.root}"

    def _write_state(self, running: bool) -> None:
        """``daemon/state.json`` for ``gt daemon status`` (town/daemon_state.py)."""
        if self._state is None:
            return
        try:
            if running:
                self._state.beat(self.town)
            else:
                self._state.stopped(self.town)
        except OSError as exc:
            if str(exc) != self._state_error:
                log.warning("cannot write %s: %s", state_file(self.town), exc)
                self._state_error = str(exc)
            return
        self._state_error = ""

    def close(self) -> None:
        try:
            if self._lock is not None and self._lock.held:  # still the town's supervisor
                self._write_state(False)
        finally:
            super().close()

    def watched(self) -> list[Watched]:
        """Also ``restart_state.json`` (its ``deacon`` entry: a ``clear-backoff`` of the
        Deacon is honoured at once) and, while the heartbeat is stale, the Deacon's
        heartbeat files ([J] ``heartbeat.json``, [L] ``.deacon-heartbeat``): a heartbeat
        ends the episode at once."""
        state = Watched(self.restart_state.parent, frozenset({self.restart_state.name}))
        if not self._heartbeat_stale:  # a fresh one is rewritten often: no pass for that
            return [*super().watched(), state]
        return [*super().watched(), state,
                Watched(self.town.heartbeat.parent,
                        frozenset({self.town.heartbeat.name, ".deacon-heartbeat"}))]

    def wakes_for(self, token: str) -> bool:
        """A tmux event wakes us for the Deacon's and Boot's sessions only."""
        return token in {session_token(self.deacon.session), session_token(self.boot.session)}

    # --- one pass -------------------------------------------------------------------------
    def tick(self, ctx: Context) -> str:
        if ctx.reloaded:
            self._wip.forget()
        begun = self.prelude(ctx, Role.DEACON)  # LockConflict first: then nothing is ours
        self._write_state(True)
        if isinstance(begun, str):
            return begun
        agent, snap = begun
        report = PassReport()
        ctx.progress()
        snap = self._ensure_deacon(snap, agent, report, ctx)
        ctx.progress()
        # The town runs elsewhere: its Boot is not ours to spawn. The Deacon is held: Boot's
        # triage would act on it (gt deacon restart) behind the operator's back.
        if not report.deacon_held and not report.split:  # a running Deacon may be held too
            report.deacon_held = self.actor.operator_hold(self.deacon, "triaging") is not None
        if not report.split and not report.deacon_held:
            with contained("Boot", ctx, agent_fields(self.boot)):
                self._ensure_boot(snap, report, ctx)
        ctx.progress()
        with contained("Deacon heartbeat check", ctx, agent_fields(self.deacon)):
            self._check_heartbeat(snap, agent, report, ctx)
        if self.settings.degraded:
            self._write_triage(report)
        return self._status(snap, report)

    # --- [L] restart_state.json --------------------------------------------------------
    @property
    def restart_state(self) -> Path:
        return self.town.daemon_dir / "restart_state.json"

    def _restart_blocked(self, report: PassReport) -> str | None:
        """[L] §6.10: why the Deacon may not be (re)started now, or None; in [J] always
        None. Unreadable state blocks too (a crash loop may be written there)."""
        if not self.naming.is_l:
            return None
        try:
            why = read_deacon(self.restart_state).blocked(time.time())
        except (DamagedFile, OSError, ValueError) as exc:
            why = f"{self.restart_state} unreadable, not restarted: {exc}"
        if why is None:
            self._blocked_logged = None
            return None
        said = why.split(" (")[0] if "crash loop" in why else "backoff"
        if self._blocked_logged != said:
            log.warning("the Deacon is %s (%s)", why, self.restart_state,
                        extra=agent_fields(self.deacon))
            self._blocked_logged = said
        report.notes.append(f"deacon {why}")
        return why

    def _record_restart(self) -> None:
        """[L]: book a (re)start of the Deacon in restart_state.json as Gas Town does."""
        if not self.naming.is_l:
            return
        try:
            entry = read_deacon(self.restart_state).after_restart(time.time(),
                                                                  self._tracker_policy())
            write_deacon(self.restart_state, entry)
        except (DamagedFile, OSError, ValueError) as exc:
            log.error("cannot record the Deacon's restart in %s: %s", self.restart_state, exc)
            return
        if entry.crash_loop_since is not None:
            log.error("the Deacon restarted %d times: crash loop, no more restarts until "
                      "`%s`", entry.restart_count, CLEAR_COMMAND,
                      extra=agent_fields(self.deacon))

    def _tracker_policy(self) -> TrackerPolicy:
        """``patrols.restart_tracker`` of ``mayor/daemon.json`` (§6.10); Gas Town's
        defaults for what is missing or unusable, which is said once per change."""
        try:
            data = read_json_object(self.town.daemon_json)
        except (DamagedFile, OSError) as exc:
            data, problems = None, [f"unreadable ({exc})"]
        else:
            problems = []
        policy, more = tracker_policy(data)
        problems += more
        said = "; ".join(problems)
        if said and said != self._policy_logged:
            log.warning("%s: %s: Gas Town's default restart backoff used for it",
                        self.town.daemon_json, said, extra=agent_fields(self.deacon))
        self._policy_logged = said
        return policy

    def _ensure_deacon(self, snap: Snapshot, agent: AgentProgram, report: PassReport,
                       ctx: Context) -> Snapshot:
        if self.naming.is_l and \
                liveness(snap.first_pane(self.deacon.session), agent) is not Liveness.RUNNING \
                and self._restart_blocked(report) is not None:
            return snap  # not started: backoff or crash loop (§6.3 ensureDeaconRunning)
        try:
            kept = self.actor.keep(self.deacon, agent, snap, ctx)
        except (StartFailed, ToolError) as exc:
            log.error("could not start the Deacon: %s", exc, extra=agent_fields(self.deacon))
            report.notes.append(f"deacon start failed: {exc}")
            report.did("error", "deacon")
            ctx.failed(str(exc))
            return self.tmux.snapshot()
        if kept.outcome is Kept.HELD:
            if self._held_logged != kept.detail:
                log.info("the Deacon was %s: not restarting it (start it by hand, or "
                         "`gastown-units clear-backoff deacon/`)", kept.detail,
                         extra=agent_fields(self.deacon))
                self._held_logged = kept.detail
            report.notes.append(f"deacon down: {kept.detail}")
            return snap
        self._held_logged = None
        if kept.outcome is Kept.ON_HOLD:  # the actor logged it once per hold
            report.deacon_held = True
            report.notes.append(f"deacon {kept.detail}: not started, Boot not spawned")
            return snap
        if kept.outcome is Kept.ELSEWHERE:  # the actor logged it once per incident
            report.split = kept.detail
            return snap
        if kept.outcome is Kept.BUSY:
            ctx.retry_in(BUSY_RETRY)  # look again once the other service is done
            report.notes.append(f"deacon: another service is acting on it ({kept.detail})")
            return snap
        if kept.outcome is Kept.RUNNING:
            return snap
        report.did("start", "deacon")
        self._record_restart()
        return self.tmux.snapshot()

    def _ensure_boot(self, snap: Snapshot, report: PassReport, ctx: Context) -> None:
        if self.settings.degraded or self.boot.session in snap.sessions:
            return  # degraded: this service is the triage; else Boot is already at work
        now = time.monotonic()
        if self._last_boot_spawn is not None and \
                now - self._last_boot_spawn < self.settings.boot_interval:
            return
        self._last_boot_spawn = now
        try:
            agent = self.agent(Role.BOOT)
            with self.actor.hold(self.boot, "spawn") as mine:
                if not mine or self.actor.pane_now(self.boot) is not None:
                    return  # someone else is at it, or Boot came up meanwhile
                self.actor.start(self.boot, agent, ctx, Reason.KEEP)
            log.info("spawned Boot (%s) for triage", self.boot.session,
                     extra=agent_fields(self.boot))
        except (Elsewhere, OperatorHeld) as exc:  # the actor logged it once per incident
            report.notes.append(f"boot not spawned: {exc}")
        except (ValueError, GastownError) as exc:
            log.error("could not spawn Boot: %s", exc, extra=agent_fields(self.boot))
            report.notes.append(f"boot spawn failed: {exc}")

    def _check_heartbeat(self, snap: Snapshot, agent: AgentProgram, report: PassReport,
                         ctx: Context) -> None:
        town, keeper, s = self.town, self.keeper, self.settings
        pane = snap.first_pane(self.deacon.session)
        if pane is None or liveness(pane, agent) is not Liveness.RUNNING:
            return
        if self.naming.is_l:
            self._check_heartbeat_l(pane, agent, report, ctx)
            return
        if time.time() - pane.created < s.deacon_grace:
            return  # just started: give it time to write its first heartbeat
        age = read_heartbeat(town).age(now_utc())
        self._next_look(age, ctx)
        if age is None or age < s.heartbeat_nudge:
            return
        if self.actor.operator_hold(self.deacon, "nudging or restarting") is not None:
            report.notes.append("deacon held by an operator: heartbeat not acted on")
            return  # an operator works with it: no HEALTH_CHECK typed, no restart
        minutes = f"{age / 60:.0f} min"
        if age > s.heartbeat_kill:
            self._restart_stuck(pane, agent, minutes, report, ctx)
            return
        if keeper.nudge(self.deacon.session, HEALTH_CHECK, ctx, min_interval=s.nudge_interval,
                        who=self.deacon):
            log.warning("Deacon heartbeat is %s old: nudged it (HEALTH_CHECK)", minutes,
                        extra=agent_fields(self.deacon))
            report.did("nudge", "deacon-stale")

    def _next_look(self, age: float | None, ctx: Context) -> None:
        """Pass again when the heartbeat reaches its next threshold (nudge, then kill), so
        that a long interval delays neither; while it is stale, a new heartbeat wakes us."""
        s = self.settings
        self._heartbeat_stale = age is not None and age >= s.heartbeat_nudge
        if age is None:
            return
        due = [t - age for t in (s.heartbeat_nudge, s.heartbeat_kill) if t > age]
        if due:
            ctx.retry_in(min(due) + 1.0)

    def _check_heartbeat_l(self, pane: Pane, agent: AgentProgram, report: PassReport,
                           ctx: Context) -> None:
        """[L] ``checkDeaconHeartbeat`` (§6.3): crash loop ⇒ nothing; a heartbeat older than
        the session's start (or none) within the grace ⇒ wait; no heartbeat ⇒ nothing;
        >= kill ⇒ restart; >= nudge ⇒ HEALTH_CHECK only while work is in progress."""
        s = self.settings
        try:
            if read_deacon(self.restart_state).crash_loop_since is not None:
                return  # neither restarted nor heartbeat-killed (§6.10)
        except (DamagedFile, OSError, ValueError):
            return  # unknown: not judged (said by _restart_blocked when it matters)
        beat = read_heartbeat(self.town)
        now = time.time()
        written = beat.timestamp.timestamp() if beat.timestamp else None
        if (written is None or written < pane.created) and now - pane.created < s.deacon_grace:
            return  # not yet written since our start of it: wait out the grace
        age = beat.age(now_utc())
        self._next_look(age, ctx)
        if age is None or age < s.heartbeat_nudge:
            return
        if self.actor.operator_hold(self.deacon, "nudging or restarting") is not None:
            report.notes.append("deacon held by an operator: heartbeat not acted on")
            return
        minutes = f"{age / 60:.0f} min"
        if age >= s.heartbeat_kill:
            self._restart_stuck(pane, agent, minutes, report, ctx)
            return
        busy = self._work_in_progress()
        if busy is None:
            report.notes.append("deacon heartbeat stale; bd failed, so not nudged")
            return
        if not busy:
            return  # nothing in flight: a quiet Deacon is fine (§6.3)
        if self.keeper.nudge(self.deacon.session, HEALTH_CHECK, ctx,
                             min_interval=s.nudge_interval, who=self.deacon):
            log.warning("Deacon heartbeat is %s old with work in progress: nudged it "
                        "(HEALTH_CHECK)", minutes, extra=agent_fields(self.deacon))
            report.did("nudge", "deacon-stale")

    def _work_in_progress(self) -> bool | None:
        """Does some store (the town's, each rig's) hold an ``in_progress`` bead? None when
        ``bd`` cannot tell. One ``bd list --limit 1`` per store, stopping at the first; the
        answer is kept while the stores look unchanged (``runtime.facts``)."""
        s = self.settings
        beads = Beads(binary=s.bd_bin, cwd=self.town.root, timeout=s.bd_timeout)
        try:
            rigs = load_rigs(self.town)
            prefixes = rig_prefixes(self.town, rigs)
            stores = list(dict.fromkeys(
                [self.town.root / ".beads", *agent_databases(self.town, prefixes)]))
            look = signature([resolve_store(store) for store in stores])
            return self._wip.get(look, lambda: any(
                store.is_dir() and beads.at(store).any_in_progress() for store in stores))
        except (ToolError, ValueError) as exc:
            log.warning("cannot tell whether work is in progress: %s", exc)
            return None

    def _restart_stuck(self, pane: Pane, agent: AgentProgram, minutes: str,
                       report: PassReport, ctx: Context) -> None:
        """Kill and restart a Deacon whose heartbeat is too old, under its lock."""
        where = agent_fields(self.deacon)
        if self._restart_blocked(report) is not None:
            return  # [L]: backoff or crash loop: not killed either
        with self.actor.hold(self.deacon, "restart (stale heartbeat)") as mine:
            if not mine:
                report.notes.append("deacon: another service is acting on it")
                return
            now = self.actor.pane_now(self.deacon)
            if now is None or now.pid != pane.pid:
                return  # restarted or stopped by someone else meanwhile: nothing stale
            log.warning("Deacon heartbeat is %s old (%s %g min): killing and restarting it",
                        minutes, ">=" if self.naming.is_l else ">",
                        self.settings.heartbeat_kill / 60, extra=where)
            report.did("restart", "deacon-stuck")
            try:
                new = self.actor.restart(self.deacon, agent, now, ctx, Reason.KEEP)
            except OperatorHeld as exc:  # held meanwhile: the actor logged it
                report.notes.append(str(exc))
                return
            except (StartFailed, ToolError, Elsewhere) as exc:
                log.error("could not restart the Deacon: %s", exc, extra=where)
                report.notes.append(f"deacon restart failed: {exc}")
                ctx.failed(str(exc))
                return
            self._record_restart()
            log_event("agent-restarted", "restarted the Deacon (stale heartbeat; pane PID %d)",
                      new.pid, who=self.deacon, logger=log)

    def _write_triage(self, report: PassReport) -> None:
        """Degraded mode: record the mechanical triage as Boot would (§1.6)."""
        town = self.town
        started = now_utc()
        action, target = report.actions[-1] if report.actions else ("nothing", "")
        status = BootStatus(started, now_utc(), action, target,
                            error="; ".join(report.notes))
        try:
            write_boot_status(town, status)
        except OSError as exc:
            log.warning("cannot write %s: %s", town.boot_status, exc)

    def _status(self, snap: Snapshot, report: PassReport) -> str:
        town = self.town
        pane = self.tmux.snapshot().first_pane(self.deacon.session) if report.actions else \
            snap.first_pane(self.deacon.session)
        parts = [report.split] if report.split else []
        if pane:
            up = datetime.now().timestamp() - pane.created
            parts.append(f"{self.deacon.session} running (pane PID {pane.pid}, "
                         f"up {up / 60:.0f} min)")
        elif not report.split:
            parts.append(f"{self.deacon.session} NOT running")
        beat = read_heartbeat(town)
        age = beat.age(now_utc())
        if beat.problem:
            parts.append(f"heartbeat unreadable, not checked: {beat.problem}")
            self.conditions.set("heartbeat", f"Deacon heartbeat unreadable, not checked "
                                f"(repair or remove the file): {beat.problem}",
                                fields=agent_fields(self.deacon))
        else:
            self.conditions.clear("heartbeat", "Deacon heartbeat readable again",
                                  fields=agent_fields(self.deacon))
            parts.append("no heartbeat yet" if age is None else
                         f"heartbeat {age / 60:.0f} min old")
        if not report.split:
            parts.append("boot: degraded triage" if self.settings.degraded else
                         f"boot: {'running' if self.boot.session in snap.sessions else 'idle'}")
        parts.extend(report.notes)
        return "; ".join(parts)
