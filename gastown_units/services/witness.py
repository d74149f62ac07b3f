"""witness@<rig>: keep the rig's Witness alive and patrol its polecats mechanically.

Each pass (rig gated, §2): keep ``gt-<rig>-witness`` running (zombie-aware, role env in the
start command, bypass dialog, theme); walk the stuck ladder for live polecats (§6.7);
carry out LIFECYCLE shutdown requests from the Witness inbox; optionally sling ready work
to new polecats up to ``max_workers``. Ladder counts and spawned issues are persisted.
"""

from __future__ import annotations

import logging
import time

from gastown_units.errors import GastownError
from gastown_units.ports import runner
from gastown_units.ports.mail import Mail, Message
from gastown_units.ports.sling import Sling
from gastown_units.ports.tmux import Snapshot
from gastown_units.runtime.conditions import Conditions
from gastown_units.runtime.contain import contained
from gastown_units.runtime.events import agent_fields
from gastown_units.runtime.facts import Cached
from gastown_units.runtime.loop import Context
from gastown_units.runtime.wake import Watched
from gastown_units.services.auto_spawn import (
    candidates,
    dump_book,
    forget_old,
    load_book,
    record,
    retry_after,
)
from gastown_units.services.base import store_watches
from gastown_units.services.polecat_shutdown import ShutdownHandler, process_requests
from gastown_units.services.rig_service import RigService
from gastown_units.services.sessions import Liveness, liveness
from gastown_units.services.stuck_ladder import Entry, Step, is_reset, next_step
from gastown_units.town.holds import all_holds
from gastown_units.town.identity import Identity, Role
from gastown_units.town.layout import Town
from gastown_units.town.polecats import last_activity, polecat_names, worktree
from gastown_units.town.rigs import rig_database
from gastown_units.town.stores import signature
from gastown_units.town.unit_state import load_state, save_state, state_path

log = logging.getLogger(__name__)

NUDGE = ("NUDGE: No activity detected for {minutes} min. Are you still working? "
         "If you are blocked, say so; if you are done, run gt done.")


class Witness(RigService):
    name = "witness"
    role = Role.WITNESS
    patrol = "witness"

    def setup_rig(self, town: Town) -> None:
        s = self.settings
        sender = {"GT_ROLE": "witness", "GT_RIG": self.rig}  # mail shows from <rig>/witness
        self.mail = Mail(binary=s.gt_bin, cwd=town.root, timeout=s.gt_timeout, env=sender)
        self.slinger = Sling(binary=s.gt_bin, cwd=town.root, timeout=s.gt_timeout, env=sender)
        self.state_file = state_path(town, f"witness-{self.rig}")
        self.state = load_state(self.state_file)
        for key in ("ladder", "dirty_notified"):  # a wrong type: that part starts afresh
            if not isinstance(self.state.get(key), dict):
                self.state[key] = {}
        self.state["dirty_notified"] = {
            k: v for k, v in self.state["dirty_notified"].items()
            if isinstance(v, int | float) and not isinstance(v, bool)}
        self.state.pop("spawned", None)  # before 2026-12: bd ready is the truth now
        self.book = load_book(self.state.get("slings"))
        self.sling: tuple[str, runner.Background, float] | None = None
        self.conditions = Conditions(log)  # told when they start and when they end
        self.last_sling = float("-inf")
        self.rig_database = rig_database(town, self.rig, self.prefix)
        self._inbox: Cached[list[Message]] = Cached(s.fact_max_age)
        self.shutdowns = ShutdownHandler(town, self.rig, self.actor, self.git, self.mail,
                                         renotify=s.ladder_interval,
                                         max_age=s.lifecycle_max_age,
                                         notified=self.state["dirty_notified"],
                                         save=self._save, hook_of=self._hook_of)

    def _hook_of(self, who: Identity) -> str | None:
        """The work hooked to a polecat now (for its shutdown marker); None when unknown."""
        bead_id = who.bead_id(self.prefix)
        if self.beads is None or bead_id is None:
            return None
        try:
            if self.naming.is_l:  # [L] §4.1, §4.2: town DB, then routing; work by assignee
                return self.beads.polecat_hook_l(bead_id, f"{who.rig}/polecats/{who.name}",
                                                 self.town.root / ".beads", self.rig_database)
            bead = self.beads.agent(bead_id)
        except GastownError as exc:
            log.info("hooked work of %s unknown (%s): its shutdown marker holds until its "
                     "agent bead changes", who.address, exc, extra=agent_fields(who))
            return None
        return bead.hook_bead if bead else ""

    def _save(self) -> None:
        try:
            save_state(self.state_file, self.state)
        except OSError as exc:
            log.error("cannot save %s: %s", self.state_file, exc)

    def patrol_pass(self, snap: Snapshot, ctx: Context) -> list[str]:
        parts: list[str] = []
        with contained("stuck-ladder patrol", ctx):
            parts.append(self._stuck_ladder(snap, ctx))
        ctx.progress()
        with contained("shutdown requests", ctx):
            parts.append(self._shutdown_requests(snap, ctx))
        if self.settings.auto_spawn:
            ctx.progress()
            with contained("auto-spawn", ctx):
                parts.append(self._auto_spawn(snap, ctx))
        return parts

    def watched(self) -> list[Watched]:
        """Also the town's store, where its mail arrives (POLECAT_DONE, LIFECYCLE)."""
        return [*super().watched(), *store_watches(self.town_stores())]

    def _shutdown_requests(self, snap: Snapshot, ctx: Context) -> str:
        if ctx.reloaded:
            self._inbox.forget()
        try:
            messages = self._inbox.get(signature(self.town_stores()),
                                       lambda: self.mail.inbox(self.identity.address))
        except GastownError as exc:
            self.conditions.set("inbox", f"cannot read the witness inbox: {exc}")
            return "inbox unreadable"
        self.conditions.clear("inbox", "the witness inbox is readable again")
        counts = process_requests(self.shutdowns, messages, snap, ctx)
        return "shutdowns " + ", ".join(f"{k} {v}" for k, v in counts.items()) if counts else ""

    # --- stuck polecats ---------------------------------------------------------------
    def _live_polecats(self, snap: Snapshot) -> list[Identity]:
        agent = self.agent(Role.POLECAT, self.rig)
        polecats = [self.spelt(Identity(Role.POLECAT, self.rig, name))
                    for name in polecat_names(self.town, self.rig)]
        return [who for who in polecats
                if liveness(snap.first_pane(who.session), agent) is Liveness.RUNNING]

    def _stuck_ladder(self, snap: Snapshot, ctx: Context) -> str:
        ladder: dict[str, object] = self.state["ladder"]
        s, now = self.settings, time.time()
        live = self._live_polecats(snap)
        changed = False
        for name in [n for n in ladder if n not in {w.name for w in live}]:
            del ladder[name]  # gone or dead: polecat-health's business, not the ladder's
            changed = True
        stuck = 0
        held = all_holds(self.town)  # an operator works with these: not nudged, not escalated
        for who in live:
            if who.session in held:
                continue
            tree = worktree(self.town, self.rig, str(who.name))
            activity = last_activity(tree) if tree else None
            if activity is None:
                continue
            entry = Entry.from_json(ladder.get(str(who.name)))
            if is_reset(entry, activity, now, s.stuck_threshold):
                log.info("polecat %s shows activity again: stuck ladder reset", who.address,
                         extra=agent_fields(who))
                ladder.pop(str(who.name), None)
                entry, changed = None, True
            if now - activity >= s.stuck_threshold:
                stuck += 1
            step = next_step(entry, activity, now, threshold=s.stuck_threshold,
                             interval=s.ladder_interval)
            if step is None:
                continue
            ctx.progress()
            if self._take_step(step, who, now - activity, ctx):
                ladder[str(who.name)] = Entry(step.value, activity, now).to_json()
                changed = True
        if changed:
            self._save()
        return f"{len(live)} live polecat(s), {stuck} stuck" if live else ""

    def _take_step(self, step: Step, who: Identity, idle: float, ctx: Context) -> bool:
        minutes = int(idle // 60)
        where = agent_fields(who)
        key = f"step:{who.address}"
        try:
            if step is Step.NUDGE:
                self.keeper.nudge(who.session, NUDGE.format(minutes=minutes), ctx, who=who)
                log.warning("polecat %s stuck (no activity for %d min): nudged (1/3)",
                            who.address, minutes, extra=where)
            elif step is Step.ESCALATE:
                self.mail.send("mayor/", f"ESCALATION: Polecat {who.name} stuck",
                               f"Polecat {who.address} has shown no activity for {minutes} "
                               "min and did not respond to a nudge.\n\n"
                               f"Consider: gt session attach {who.address}  or  "
                               f"gt session stop {who.address}")
                log.warning("polecat %s still stuck after a nudge: escalated to mayor/ (2/3)",
                            who.address, extra=where)
            else:
                log.warning("polecat %s still stuck after nudge and escalation (%d min): "
                            "waiting for a human (3/3)", who.address, minutes, extra=where)
        except GastownError as exc:
            self.conditions.set(key, f"stuck-ladder step {step.name.lower()} for {who.address} "
                                f"failed, retried every pass: {exc}", fields=where)
            return False
        self.conditions.clear(key, f"stuck-ladder step {step.name.lower()} for {who.address} "
                              "done", fields=where)
        return True

    # --- auto-spawn ---------------------------------------------------------------------
    def _auto_spawn(self, snap: Snapshot, ctx: Context) -> str:
        """Sling ready work of the rig's database to new polecats, one at a time.

        The sling runs in the background (a polecat start outlasts the watchdog); each pass
        collects it and starts the next. With ``--once`` the pass waits for each sling.
        """
        s = self.settings
        slung = 0
        tried: set[str] = set()  # never the same issue twice in one pass
        while True:
            slung += self._collect_sling(ctx) == "slung"
            if self.sling is not None:
                ctx.retry_in(1.0)
                return f"auto-spawn: slinging {self.sling[0]} ({self.sling[1].age:.0f}s)"
            live = len(self._live_polecats(snap)) + (slung if ctx.once else 0)
            if live >= s.max_workers:
                return f"auto-spawn: {slung} slung, at capacity ({live}/{s.max_workers})"
            try:
                ready = self.beads.at(self.rig_database).ready() if self.beads else []
            except GastownError as exc:
                self.conditions.set("bd-ready", f"auto-spawn skipped: bd ready failed: {exc}")
                return "auto-spawn: bd ready failed"
            self.conditions.clear("bd-ready", "auto-spawn: bd ready works again")
            now = time.time()
            forget_old(self.book, now)
            todo = [i for i in candidates(ready, self.book, now, backoff=s.sling_backoff,
                                          prefix=s.issue_prefix) if i not in tried]
            if not todo:
                return f"auto-spawn: {slung} slung, {live}/{s.max_workers} live"
            wait = self.last_sling + s.spawn_delay - time.monotonic()
            if wait > 0 and not ctx.once:
                ctx.retry_in(wait)
                return f"auto-spawn: next sling in {wait:.0f}s"
            if wait > 0:
                ctx.sleep(wait)
            tried.add(todo[0])
            if not self._start_sling(todo[0], ctx):
                continue
            if not ctx.once:
                ctx.retry_in(1.0)
                return f"auto-spawn: slinging {todo[0]}, {len(todo) - 1} more ready"
            while self.sling is not None and not self.sling[1].finished:
                ctx.sleep(0.1)  # --once: wait for this sling, feeding the watchdog

    def _start_sling(self, issue: str, ctx: Context) -> bool:
        """Book the attempt first (a crash mid-sling then counts as a failure), then start."""
        now = time.time()
        record(self.book, issue, ok=False, started=now)
        self._save_book()
        self.last_sling = time.monotonic()
        try:
            self.sling = (issue, self.slinger.start(issue, self.rig,
                                                    timeout=self.settings.sling_timeout),
                          now)
        except GastownError as exc:
            self._sling_failed(issue, str(exc), ctx)
            return False
        log.info("auto-spawn: slinging %s to a new polecat of %s", issue, self.rig)
        return True

    def _collect_sling(self, ctx: Context) -> str:
        """The outcome of a finished sling: "slung", "failed", or "" (none finished)."""
        if self.sling is None:
            return ""
        issue, job, started = self.sling
        try:
            result = job.poll()
        except GastownError as exc:  # timed out: killed; bd ready will say what it did
            self.sling = None
            self._sling_failed(issue, str(exc), ctx)
            return "failed"
        if result is None:
            return ""
        self.sling = None
        if not result.ok:
            self._sling_failed(issue, result.error_line(), ctx)
            return "failed"
        record(self.book, issue, ok=True, started=started)
        self._save_book()
        said = (result.stdout.strip().splitlines() or ["gt sling said nothing"])[-1]
        log.info("auto-spawned %s: %s", issue, said)
        return "slung"

    def _sling_failed(self, issue: str, why: str, ctx: Context) -> None:
        attempt = self.book.get(issue)
        failures = attempt.failures if attempt else 1
        delay = retry_after(failures, self.settings.sling_backoff)
        log.error("auto-spawn of %s failed (%d in a row; retried in %.0fs if still ready): %s",
                  issue, failures, delay, why)
        ctx.failed(f"gt sling {issue}: {why}")

    def _save_book(self) -> None:
        self.state["slings"] = dump_book(self.book)
        self._save()
