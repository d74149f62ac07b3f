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
from gastown_units.ports.mail import Mail
from gastown_units.ports.sling import Sling
from gastown_units.ports.tmux import Snapshot
from gastown_units.runtime.contain import contained
from gastown_units.runtime.loop import Context
from gastown_units.services.polecat_shutdown import ShutdownHandler, process_requests
from gastown_units.services.rig_service import RigService
from gastown_units.services.sessions import Liveness, liveness
from gastown_units.services.stuck_ladder import Entry, Step, is_reset, next_step
from gastown_units.town.identity import Identity, Role
from gastown_units.town.layout import Town
from gastown_units.town.polecats import last_activity, polecat_names, worktree
from gastown_units.town.unit_state import load_state, save_state, state_path

log = logging.getLogger(__name__)

NUDGE = ("NUDGE: No activity detected for {minutes} min. Are you still working? "
         "If you are blocked, say so; if you are done, run gt done.")
SKIP_TYPES = frozenset({"merge-request", "epic"})


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
        self.state.setdefault("ladder", {})
        self.state.setdefault("spawned", [])
        self.state.setdefault("dirty_notified", {})
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
            bead = self.beads.agent(bead_id)
        except GastownError as exc:
            log.info("hooked work of %s unknown (%s): its shutdown marker holds until its "
                     "agent bead changes", who.address, exc)
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

    def _shutdown_requests(self, snap: Snapshot, ctx: Context) -> str:
        try:
            messages = self.mail.inbox(self.identity.address)
        except GastownError as exc:
            log.warning("cannot read the witness inbox: %s", exc)
            return "inbox unreadable"
        counts = process_requests(self.shutdowns, messages, snap, ctx)
        return "shutdowns " + ", ".join(f"{k} {v}" for k, v in counts.items()) if counts else ""

    # --- stuck polecats ---------------------------------------------------------------
    def _live_polecats(self, snap: Snapshot) -> list[Identity]:
        agent = self.agent(Role.POLECAT, self.rig)
        return [who for name in polecat_names(self.town, self.rig)
                if liveness(snap.first_pane((who := Identity(Role.POLECAT, self.rig, name))
                                            .session), agent) is Liveness.RUNNING]

    def _stuck_ladder(self, snap: Snapshot, ctx: Context) -> str:
        ladder: dict[str, object] = self.state["ladder"]
        s, now = self.settings, time.time()
        live = self._live_polecats(snap)
        changed = False
        for name in [n for n in ladder if n not in {w.name for w in live}]:
            del ladder[name]  # gone or dead: polecat-health's business, not the ladder's
            changed = True
        stuck = 0
        for who in live:
            tree = worktree(self.town, self.rig, str(who.name))
            activity = last_activity(tree) if tree else None
            if activity is None:
                continue
            entry = Entry.from_json(ladder.get(str(who.name)))
            if is_reset(entry, activity, now, s.stuck_threshold):
                log.info("polecat %s shows activity again: stuck ladder reset", who.address,
                         extra={"GT_AGENT": who.address})
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
        where = {"GT_AGENT": who.address}
        try:
            if step is Step.NUDGE:
                self.keeper.nudge(who.session, NUDGE.format(minutes=minutes), ctx)
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
            log.warning("stuck-ladder step %s for %s failed, retried next pass: %s",
                        step.name.lower(), who.address, exc, extra=where)
            return False
        return True

    # --- auto-spawn ---------------------------------------------------------------------
    def _auto_spawn(self, snap: Snapshot, ctx: Context) -> str:
        s = self.settings
        live = len(self._live_polecats(snap))
        capacity = s.max_workers - live
        if capacity <= 0:
            return f"auto-spawn: at capacity ({live}/{s.max_workers})"
        try:
            ready = self.beads.ready() if self.beads else []
        except GastownError as exc:
            log.warning("auto-spawn skipped: bd ready failed: %s", exc)
            return "auto-spawn: bd ready failed"
        spawned: list[str] = self.state["spawned"]
        todo = [str(i.get("id")) for i in ready
                if i.get("id") and i.get("issue_type") not in SKIP_TYPES
                and str(i.get("id")) not in spawned
                and (not s.issue_prefix or str(i.get("id")).startswith(s.issue_prefix))]
        done = 0
        for issue in todo[:capacity]:
            if done:
                ctx.sleep(s.spawn_delay)
            spawned.append(issue)  # claim first: an issue is never slung twice
            self._save()
            try:
                out = self.slinger.sling(issue, self.rig)
            except GastownError as exc:
                log.error("auto-spawn of %s failed (not retried): %s", issue, exc)
                ctx.failed(str(exc))
                continue
            log.info("auto-spawned %s: %s", issue, out)
            done += 1
        return f"auto-spawn: {done} slung, {live}/{s.max_workers} live"
