"""What every service does before its first pass: open the town, check tools, take the lock."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from gastown_units.config import Settings
from gastown_units.errors import ConfigError, ToolError, ToolMissing
from gastown_units.ports import dialect_probe
from gastown_units.ports.agent_locks import AgentLocks
from gastown_units.ports.git import Git
from gastown_units.ports.locks import TownLock, shutdown_in_progress, shutting_down_pid
from gastown_units.ports.tmux import ServerDown, Snapshot, Tmux
from gastown_units.runtime.loop import Context
from gastown_units.runtime.wake import Watched
from gastown_units.services.actor import AgentActor
from gastown_units.services.sessions import SessionKeeper
from gastown_units.services.split_town import PROBE_TIMEOUT, SplitTownGuard
from gastown_units.town.agents import AgentProgram, resolve_agent
from gastown_units.town.dialect import Dialect
from gastown_units.town.holds import holds_dir
from gastown_units.town.identity import BOOT, DEACON, J_NAMING, Identity, Naming, Role
from gastown_units.town.layout import Town
from gastown_units.town.patrols import patrol_enabled
from gastown_units.town.rigs import Rig, load_rigs
from gastown_units.town.shutdown_marks import marks_dir
from gastown_units.town.stores import NOT_DATA, data_dirs, resolve_store
from gastown_units.town.town_down import (
    UP_SETTLE,
    TownDown,
    clear_down,
    down_path,
    read_down,
    write_down,
)
from gastown_units.town.unit_state import state_path

log = logging.getLogger(__name__)

WAITING_FOR_TMUX = "waiting for the tmux server (is gastown-tmux.service running?)"
# While the town is down, look this often for the gt up that ends it (its Deacon session
# leaves no trace in the files we watch).
DOWN_RECHECK = 5.0
# A pass woken by a beads store waits this long after the last: a busy store (agents
# writing beads all the time) then costs a pass every few seconds, not one per write.
STORE_GAP = 3.0
# Files in daemon/ that say the town is going down or coming back (gastown.md §1.7,
# gastown-2026.md §6.10, §6.11). Not state.json: the Deacon keeper rewrites it every pass.
# Not restart_state.json: every restart a sweep books rewrites it, and of its entries only
# the Deacon's ("deacon", Gas Town's own) decides what a long-running service does, so
# only the deacon-keeper watches it; the others would each run a pass per restart.
_DAEMON_NAMES = frozenset({"shutdown.lock", "shutting-down", "daemon.pid", "daemon.lock"})


def store_watches(stores: list[Path]) -> list[Watched]:
    """Watches on the data directories of beads stores (mail, rig and agent beads)."""
    return [Watched(d, ignore=NOT_DATA, gap=STORE_GAP)
            for store in stores for d in data_dirs(store)]


@contextmanager
def setup_errors() -> Iterator[None]:
    """A damaged town file found while setting up is a configuration error: one line,
    exit 78, and no restart loop under systemd (never a traceback)."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, RecursionError, RuntimeError) as exc:
        raise ConfigError(str(exc)) from None


class TownService:
    """Base of the long-running services: town, tmux client, session keeper, town lock."""

    name = "service"
    patrol = ""  # the mayor/daemon.json patrol that switches this service off

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tmux = Tmux(binary=settings.tmux_bin, socket=settings.tmux_socket,
                         timeout=settings.tmux_timeout)
        self.git = Git(binary=settings.git_bin, timeout=settings.git_timeout)
        self._town: Town | None = None
        self._keeper: SessionKeeper | None = None
        self._actor: AgentActor | None = None
        self._lock: TownLock | None = None
        self._patrol_damage = ""  # the last damage of mayor/daemon.json logged
        self.naming: Naming = J_NAMING  # the town's dialect, known once take_town ran
        self._down_told: float | None = None  # the town-down mark told in the journal
        self._gt_down_told = ""  # the gt down in progress told in the journal

    @property
    def town(self) -> Town:
        assert self._town is not None, "setup() not run"
        return self._town

    @property
    def keeper(self) -> SessionKeeper:
        assert self._keeper is not None, "setup() not run"
        return self._keeper

    @property
    def actor(self) -> AgentActor:
        assert self._actor is not None, "setup() not run"
        return self._actor

    def holder(self) -> str:
        """Who this process is, in the agent locks it holds (for others' logs)."""
        return self.name

    def open_town(self) -> Town:
        """Open and check the town, the patrol toggles and tmux; ConfigError if unusable."""
        town = Town.open(self.settings.town_root)
        try:
            self.tmux.check_installed()
        except ToolMissing as exc:
            raise ConfigError(str(exc)) from None
        return town

    def load_rigs(self, town: Town) -> dict[str, Rig]:
        """The town's rigs; a malformed ``mayor/rigs.json`` is a configuration error."""
        try:
            return load_rigs(town)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def know_dialect(self, town: Town) -> None:
        """Which Gas Town this is ([J] or [L], gastown-2026.md §0); ConfigError (exit 78,
        one line with the evidence) for a town that cannot be placed."""
        try:
            rigs = load_rigs(town)
        except ValueError:
            rigs = {}  # the service's own setup reports a damaged rigs.json
        found = dialect_probe.resolve(town, rigs, self.settings)
        if found.verdict.dialect is Dialect.UNKNOWN:
            raise ConfigError(f"cannot tell which Gas Town {town.root} is, so nothing is "
                              f"started or killed ({found.verdict.describe()}); set "
                              "GT_DIALECT=j or GT_DIALECT=l in /etc/gastown/gastown.conf "
                              "once you know")
        self.naming = found.naming
        self.tmux.socket = found.socket
        self.settings = self.settings.for_dialect("l" if self.naming.is_l else "j")
        self.settings.check()  # an operator's knob may not fit the dialect's defaults
        log.info("%s", found.line())

    def rename_rigs(self, rigs: Mapping[str, Rig]) -> None:
        """[L] session names follow the rigs' prefixes: use the current registry (Gas Town
        reloads it every heartbeat, 2026 §3.1)."""
        prefixes = {name: rig.session_prefix for name, rig in rigs.items()}
        self.naming = Naming.of(self.naming.dialect, prefixes)
        if self._actor is not None:
            self._actor.naming = self.naming

    def spelt(self, who: Identity) -> Identity:
        """``who`` as this town spells it (session names, GT_ROLE)."""
        return who.in_town(self.naming)

    @property
    def deacon(self) -> Identity:
        return self.spelt(DEACON)

    @property
    def boot(self) -> Identity:
        return self.spelt(BOOT)

    def take_town(self, town: Town) -> None:
        """Know the dialect, hold the shared town lock (refuses beside ``gt daemon``) and
        build the keeper."""
        self.know_dialect(town)
        self._lock = TownLock(town.daemon_lock)
        self._lock.acquire()
        self._town = town
        self._keeper = SessionKeeper(town, self.tmux, start_timeout=self.settings.start_timeout,
                                     kill_grace=self.settings.kill_grace)
        locks = AgentLocks(town.agent_locks_dir, self.holder())
        guard = SplitTownGuard(binary=self.settings.tmux_bin, socket=self.tmux.socket,
                               town_root=town.root,
                               state_file=state_path(town, "split-town"),
                               timeout=min(self.settings.tmux_timeout, PROBE_TIMEOUT))
        self._actor = AgentActor(town, self.tmux, self._keeper, self.git, locks,
                                 ready_prompt=self.settings.ready_prompt, guard=guard,
                                 naming=self.naming)

    def agent(self, role: Role, rig: str | None = None, town: Town | None = None
              ) -> AgentProgram:
        """The agent for ``role``; ValueError for unusable settings or override."""
        return resolve_agent(town or self.town, role, rig, self.settings.agent_command)

    @property
    def lock_file(self) -> Path | None:
        """The town lock we hold (the loop wakes us when it is unlinked), or None."""
        return self._lock.path if self._lock is not None and self._lock.held else None

    def watched(self) -> list[Watched]:
        """What wakes this service besides tmux events (the loop re-asks after every
        pass): the rig registry, the patrol toggles, the town's down/up files, operator
        holds and shutdown markers. Subclasses add the stores and files of their facts."""
        town = self.town
        return [Watched(town.root / "mayor", frozenset({"rigs.json", "daemon.json"})),
                Watched(town.daemon_dir, _DAEMON_NAMES),
                Watched(down_path(town).parent, frozenset({down_path(town).name})),
                Watched(holds_dir(town)),
                Watched(marks_dir(town))]

    def town_stores(self) -> list[Path]:
        """The town's own beads store (mail, [L] agent beads), redirect followed."""
        return [resolve_store(self.town.root / ".beads")]

    def paused(self, ctx: Context | None = None) -> str | None:
        """Why this pass must not act (``gt down``, patrol switched off), or None.

        A damaged ``mayor/daemon.json`` reads as Gas Town reads a missing one: every patrol
        on (§6.9), so a killed Deacon still comes back; the damage is in the status line
        and ``--once``'s exit code every pass, and in the journal once per new damage.
        """
        down = self.town_down()
        if down:
            if ctx is not None:
                ctx.retry_in(DOWN_RECHECK)
            return down
        if self.patrol:
            try:
                enabled = patrol_enabled(self.town, self.patrol)
            except ValueError as exc:
                if str(exc) != self._patrol_damage:
                    log.error("patrol toggles unreadable, acting as if enabled (Gas Town's "
                              "default; repair the file): %s", exc)
                    self._patrol_damage = str(exc)
                if ctx is not None:
                    ctx.failed(f"damaged, read as all patrols on: {exc}")
                return None
            if self._patrol_damage:
                log.info("%s is readable again", self.town.daemon_json)
                self._patrol_damage = ""
            if not enabled:
                return f"{self.patrol} patrol disabled in mayor/daemon.json: not acting"
        return None

    def gt_down_running(self) -> str | None:
        """Why a ``gt down`` is at work now, or None (flock test of ``shutdown.lock``, and
        [L] ``daemon/shutting-down`` naming a live PID)."""
        if shutdown_in_progress(self.town.shutdown_lock):
            return "gt down holds daemon/shutdown.lock"
        pid = shutting_down_pid(self.town.shutting_down)
        if pid is not None:
            return f"gt down (PID {pid}) is running (daemon/shutting-down)"
        return None

    def town_down(self) -> str | None:
        """The status line while the town is down (``gt down``), or None.

        Every pass asks: is our ``daemon.lock`` still the file at its path (re-taken if
        not; LockConflict if a ``gt daemon`` won it meanwhile), is a ``gt down`` at work,
        is the town marked down; a mark ends with ``gt up``'s Deacon (see town_down).
        """
        lock_event = self._lock.check() if self._lock is not None else None
        if lock_event:
            log.warning("%s was %s (gt down or gt daemon stop of a mid-2026 Gas Town): "
                        "took a shared lock on the new file again", self.town.daemon_lock,
                        lock_event)
        running = self.gt_down_running()
        if running:
            self._mark_down(f"{running}, seen by {self.name}")
            if running != self._gt_down_told:
                log.warning("%s: not acting while it runs; the town stays down after it",
                            running)
                self._gt_down_told = running
            return f"town is shutting down ({running}): not acting"
        self._gt_down_told = ""
        if lock_event:
            self._mark_down(f"daemon/daemon.lock was {lock_event} (gt down or gt daemon "
                            f"stop), seen by {self.name}")
        try:
            mark = read_down(self.town)
        except OSError as exc:  # cannot tell: do not act
            return f"town-down mark unreadable, not acting: {exc}"
        if mark is None:
            self._down_told = None
            return None
        if self._resumed_by_gt_up(mark):
            return None
        if self._down_told != mark.at:
            log.warning("%s", mark.status())
            self._down_told = mark.at
        return mark.status()

    def _mark_down(self, reason: str) -> TownDown:
        try:
            mark = write_down(self.town, reason, self.name)
        except OSError as exc:  # the pass does not act anyway; the next one writes it
            log.error("cannot write the town-down mark: %s", exc)
            return TownDown(0.0, reason, self.name)
        if self._down_told != mark.at:
            log.warning("%s", mark.status())
            self._down_told = mark.at
        return mark

    def _resumed_by_gt_up(self, mark: TownDown) -> bool:
        """``gt up`` brought the town back: a Deacon session created after the mark (we
        start nothing while down), for UP_SETTLE seconds. Clears the mark if so."""
        if not mark.readable:
            return False
        try:
            pane = self.tmux.snapshot().first_pane(DEACON.session)
        except (ServerDown, ToolError):
            return False
        if pane is None or pane.created <= mark.at or time.time() - pane.created < UP_SETTLE:
            return False
        if clear_down(self.town):
            log.warning("the Deacon session %s is back (created after the town went down: "
                        "gt up): the town is up again, resuming", DEACON.session)
        self._down_told = None
        return True

    def prelude(self, ctx: Context, role: Role, rig: str | None = None
                ) -> tuple[AgentProgram, Snapshot] | str:
        """Start of a pass: the agent and a tmux snapshot, or the status line to stop with."""
        paused = self.paused(ctx)
        if paused:
            return paused
        try:
            agent = self.agent(role, rig)
        except ValueError as exc:  # unknown runtime: no liveness verdict, so no action
            log.error("agent of %s unknown, not judging or starting it (repair the file): %s",
                      role, exc)
            ctx.failed(str(exc))
            return f"agent unknown, nothing judged or started: {exc}"
        try:
            return agent, self.tmux.snapshot()
        except ServerDown:
            return WAITING_FOR_TMUX

    def close(self) -> None:
        if self._actor:
            self._actor.locks.release_all()
        if self._lock:
            self._lock.release()
