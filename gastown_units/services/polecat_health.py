"""polecat-health: bring crashed polecats back, in one sweep (§6.5, §6.6, §7).

Run as a oneshot by a tmux event (a session closed) within milliseconds and by a timer as
the safety net. A polecat is crashed when its session is gone while its agent bead still
has work hooked. Probes are batched: one tmux listing, one ``bd list``, one ``bd show`` per
sweep. Deaths, mail incidents and restart backoff persist between sweeps.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from gastown_units.config import Settings
from gastown_units.errors import ConfigError, GastownError, ToolError
from gastown_units.ports.beads import AgentBead, Beads
from gastown_units.ports.git import Git
from gastown_units.ports.mail import Mail
from gastown_units.ports.tmux import ServerDown, Snapshot
from gastown_units.runtime.loop import Context
from gastown_units.services.base import WAITING_FOR_TMUX, TownService
from gastown_units.services.restart_tracker import Policy, RestartTracker
from gastown_units.services.rig_gate import label_gate, wisp_gate
from gastown_units.services.sessions import StartOptions, rig_theme
from gastown_units.town.events import append_event, go_duration
from gastown_units.town.identity import Identity, Role
from gastown_units.town.jsonfile import parse_time
from gastown_units.town.layout import Town
from gastown_units.town.polecats import polecat_names, worktree
from gastown_units.town.rigs import default_branch, rig_prefixes
from gastown_units.town.unit_state import load_state, save_state, state_path

log = logging.getLogger(__name__)


class RestartError(GastownError):
    """A crashed polecat could not be restarted (mailed to the witness)."""


@dataclass
class Sweep:
    """Counts for the status line."""

    polecats: int = 0
    restarted: int = 0
    failed: int = 0
    held: int = 0
    notes: list[str] = field(default_factory=list)

    def line(self, rigs: int) -> str:
        text = (f"swept {self.polecats} polecat(s) in {rigs} rig(s): {self.restarted} "
                f"restarted, {self.failed} failed, {self.held} held back")
        return "; ".join([text, *self.notes])


class PolecatHealth(TownService):
    name = "polecat-health"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        s = settings
        self.policy = Policy(s.restart_backoff, s.restart_backoff_max, s.crash_loop_restarts,
                             s.crash_loop_window, s.restart_stable_reset)

    def setup(self, ctx: Context) -> str:
        town = self.open_town()
        self.rigs = self.load_rigs(town)
        try:
            self.prefixes = rig_prefixes(town, self.rigs)
            self.agent(Role.POLECAT, None, town=town)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.take_town(town)
        s = self.settings
        self.beads = Beads(binary=s.bd_bin, cwd=town.root, timeout=s.bd_timeout)
        self.mail = Mail(binary=s.gt_bin, cwd=town.root, timeout=s.gt_timeout)
        self.git = Git(binary=s.git_bin, timeout=s.git_timeout)
        self.tracker = RestartTracker(town.daemon_dir / "restart_state.json", self.policy)
        self.state_file = state_path(town, "polecat-health")
        return f"sweeping polecats of {len(self.rigs)} rig(s) in {town.root}"

    # --- the sweep -----------------------------------------------------------------------
    def tick(self, ctx: Context) -> str:
        """Sweep; sweep again while tmux events arrived during the last sweep.

        A ``.path`` unit does not queue events that arrive while its service runs, so a
        polecat dying mid-sweep would otherwise wait for the timer.
        """
        for _ in range(5):
            seen = self._event_stamp()
            status = self._sweep(ctx)
            if self._event_stamp() == seen:
                return status
            log.info("tmux events arrived during the sweep: sweeping again")
            ctx.progress()
        return status

    def _event_stamp(self) -> int | None:
        path = self.settings.event_file
        try:
            return path.stat().st_mtime_ns if path else None
        except OSError:
            return None

    def _sweep(self, ctx: Context) -> str:
        paused = self.paused()
        if paused:
            return paused
        try:
            snap = self.tmux.snapshot()
        except ServerDown:
            return WAITING_FOR_TMUX
        try:
            agents = {a.id: a for a in self.beads.list_agents()}
            rig_beads = self.beads.show_many([f"{p}-rig-{r}" for r, p in self.prefixes.items()])
        except ToolError as exc:  # unknown is not dead: no restarts on missing information
            log.warning("bd failed, no polecat is restarted this sweep: %s", exc)
            ctx.failed(str(exc))
            return f"bd failed, nothing restarted: {exc}"
        try:
            self.tracker.load()
        except (ValueError, OSError) as exc:
            raise ConfigError(f"{self.tracker.path}: {exc}") from None
        self.state = load_state(self.state_file)
        report, now = Sweep(), time.time()
        crashed: list[tuple[Identity, AgentBead]] = []
        operational = 0
        for rig, prefix in sorted(self.prefixes.items()):
            closed = wisp_gate(self.town, rig) or \
                label_gate(rig_beads.get(f"{prefix}-rig-{rig}"), f"{prefix}-rig-{rig}")
            if closed:
                log.debug("rig %s skipped: %s", rig, closed.reason)
                continue
            operational += 1
            for name in polecat_names(self.town, rig):
                who = Identity(Role.POLECAT, rig, name)
                report.polecats += 1
                found = self._check(who, agents.get(str(who.bead_id(prefix))), snap, now)
                if found:
                    crashed.append((who, found))
        if crashed:
            ctx.progress()
            try:
                hooked = self.beads.show_many([bead.hook_bead for _, bead in crashed])
            except ToolError as exc:
                log.warning("bd failed reading hooked beads, nothing restarted: %s", exc)
                ctx.failed(str(exc))
                crashed, hooked = [], {}
            for who, bead in crashed:
                ctx.progress()
                self._crashed(who, bead, hooked.get(bead.hook_bead), snap, now, report, ctx)
        self._save()
        return report.line(operational)

    def _check(self, who: Identity, bead: AgentBead | None, snap: Snapshot, now: float
               ) -> AgentBead | None:
        """Live polecat: GUPP and stability bookkeeping; dead with hooked work: returned."""
        pane = snap.first_pane(who.session)
        incidents = self.state.setdefault("incidents", {})
        if pane is not None:
            self.state.setdefault("dead", {}).pop(who.session, None)
            incidents.pop(f"orphaned:{who.session}", None)
            if self.tracker.stable(who.session, now):
                log.info("%s stable again: restart backoff cleared", who.session,
                         extra={"GT_AGENT": who.address})
            if bead and bead.hook_bead:
                self._gupp(who, bead, pane.command, now)
            return None
        if bead is None or not bead.hook_bead:
            return None  # an orphan without work: the witness's business
        return bead

    def _gupp(self, who: Identity, bead: AgentBead, command: str, now: float) -> None:
        """GUPP_VIOLATION: work hooked, agent alive, bead not updated for long; once."""
        key = f"gupp:{bead.id}"
        incidents = self.state["incidents"]
        updated = parse_time(bead.updated_at)
        agent = self.agent(Role.POLECAT, who.rig)
        age = now - updated.timestamp() if updated is not None else 0.0
        if age <= self.settings.gupp_timeout or not agent.is_running(command):
            incidents.pop(key, None)
            return
        if incidents.get(key) == bead.hook_bead:
            return
        duration = go_duration(age, round_to_minute=True)
        self._mail_witness(
            who, f"GUPP_VIOLATION: {bead.id} stuck for {duration}",
            f"Agent {bead.id} has work on hook but isn't progressing.\n\n"
            f"hook_bead: {bead.hook_bead}\nstuck_duration: {duration}\n\n"
            "Action needed: Check if agent is alive and responsive. "
            "Consider restarting if stuck.", key, bead.hook_bead)

    def _crashed(self, who: Identity, bead: AgentBead, hooked: dict | None, snap: Snapshot,
                 now: float, report: Sweep, ctx: Context) -> None:
        where = {"GT_AGENT": who.address}
        if bead.agent_state in ("done", "nuked"):
            return
        if hooked is not None and hooked.get("status") == "closed":
            log.info("%s is dead but its hooked bead %s is closed: not restarted",
                     who.session, bead.hook_bead, extra=where)
            return
        updated = parse_time(bead.updated_at)
        if bead.agent_state == "spawning" and updated is not None and \
                now - updated.timestamp() < self.settings.spawn_grace:
            return  # still being spawned by gt sling
        self._record_death(who, bead, now)
        if self.tracker.loops_now(who.session, now):
            log.error("CRASH LOOP: %s restarted %d times within %s: restarts stopped; "
                      "release with `gastown-units clear-backoff %s`", who.session,
                      self.policy.loop_count, go_duration(self.policy.loop_window),
                      who.address, extra=where)
            self._mail_witness(who, f"CRASH_LOOP: {who.address} restarts stopped",
                               f"Polecat {who.name} crashed {self.policy.loop_count} times "
                               f"within {go_duration(self.policy.loop_window)}.\n\n"
                               f"hook_bead: {bead.hook_bead}\n\nRestarts are stopped until "
                               f"`gastown-units clear-backoff {who.address}`.",
                               f"loop:{who.session}", bead.hook_bead)
        blocked = self.tracker.blocked(who.session, now)
        if blocked:
            report.held += 1
            log.info("%s is dead with work hooked; not restarted now (%s)", who.session,
                     blocked, extra=where)
            self._mail_witness(who, f"ORPHANED_WORK: {bead.id} has hooked work but is dead",
                               f"Agent {bead.id} is dead but has work on its hook.\n\n"
                               f"hook_bead: {bead.hook_bead}\n\nAction needed: Either "
                               "restart the agent or reassign the work.",
                               f"orphaned:{who.session}", bead.hook_bead)
            return
        log.warning("CRASH DETECTED: polecat %s has hook_bead=%s but session %s is dead",
                    who.address, bead.hook_bead, who.session, extra=where)
        self.tracker.record(who.session, now)
        try:
            self._restart(who, ctx)
        except GastownError as exc:
            report.failed += 1
            ctx.failed(str(exc))
            log.error("restart of %s failed: %s", who.session, exc, extra=where)
            self._send(who, f"CRASHED_POLECAT: {who.address} restart failed",
                       f"Polecat {who.name} crashed and automatic restart failed.\n\n"
                       f"hook_bead: {bead.hook_bead}\nrestart_error: {exc}\n\n"
                       "Manual intervention may be required.")
            return
        report.restarted += 1

    def _restart(self, who: Identity, ctx: Context) -> None:
        """Pre-sync, re-check, start with the role env in the command, pane-died hook."""
        rig, name = str(who.rig), str(who.name)
        tree = worktree(self.town, rig, name)
        if tree is None:
            raise RestartError(f"worktree missing: neither polecats/{name}/{rig} nor "
                               f"polecats/{name} (with .git) exists")
        for problem in self.git.pre_sync(tree, default_branch(self.town, rig)):
            log.warning("pre-sync of %s: %s (restarting anyway)", who.session, problem,
                        extra={"GT_AGENT": who.address})
        ctx.progress()
        if self.tmux.has_session(who.session):
            log.info("%s came back while we looked: not restarted", who.session)
            return
        agent = self.agent(Role.POLECAT, rig)
        pane = self.keeper.start(who, agent, ctx, StartOptions(theme=rig_theme(who)),
                                 prompt=False)
        hook = (f"run-shell \"gt log crash --agent '{rig}/{name}' --session "
                f"'{who.session}' --exit-code #{{pane_dead_status}}\"")
        try:
            self.tmux.set_hook(who.session, "pane-died", hook)
        except ToolError as exc:
            log.warning("pane-died hook not set on %s: %s", who.session, exc)
        log.info("restarted %s (pane PID %d)", who.session, pane.pid,
                 extra={"GT_AGENT": who.address})

    # --- deaths, mail, state ----------------------------------------------------------
    def _record_death(self, who: Identity, bead: AgentBead, now: float) -> None:
        """Count each death once; ``mass_death_count`` within the window → one event."""
        dead = self.state.setdefault("dead", {})
        if dead.get(who.session) == bead.hook_bead:
            return  # this death was counted already (e.g. a restart failed)
        dead[who.session] = bead.hook_bead
        window = self.settings.mass_death_window
        deaths = [d for d in self.state.get("deaths", [])
                  if isinstance(d, list) and len(d) == 2 and now - float(d[0]) <= window]
        deaths.append([now, who.session])
        if len(deaths) >= self.settings.mass_death_count:
            sessions = [str(d[1]) for d in deaths]
            log.warning("MASS DEATH DETECTED: %d sessions died in %s: %s", len(deaths),
                        go_duration(window), sessions)
            try:
                append_event(self.town, "mass_death", {
                    "count": len(deaths), "window": go_duration(window), "sessions": sessions})
            except OSError as exc:
                log.error("cannot append to %s: %s", self.town.events, exc)
            deaths = []
        self.state["deaths"] = deaths

    def _mail_witness(self, who: Identity, subject: str, body: str, key: str,
                      value: str) -> None:
        """Mail the rig's witness once per incident (``key`` → ``value``)."""
        incidents = self.state.setdefault("incidents", {})
        if incidents.get(key) == value:
            return
        if self._send(who, subject, body):
            incidents[key] = value

    def _send(self, who: Identity, subject: str, body: str) -> bool:
        try:
            self.mail.send(f"{who.rig}/witness", subject, body)
        except GastownError as exc:
            log.error("could not mail %s/witness (%s): %s", who.rig, subject, exc)
            return False
        return True

    def _save(self) -> None:
        try:
            self.tracker.save()
            save_state(self.state_file, self.state)
        except OSError as exc:
            log.error("cannot save sweep state: %s", exc)


def clear_backoff(town: Town, session: str, policy: Policy) -> bool:
    """Release an agent from backoff or a crash loop; True if there was anything to clear."""
    tracker = RestartTracker(town.daemon_dir / "restart_state.json", policy)
    tracker.load()
    cleared = tracker.clear(session)
    if cleared:
        tracker.save()
    return cleared

