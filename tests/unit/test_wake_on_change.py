"""Wake on change, not on a clock (issue 12 item 1): the file watch, the kept facts and the
stores' look, and the loop that ties them together."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from gastown_units.runtime.facts import Cached
from gastown_units.runtime.loop import Context, Stopping, run_service
from gastown_units.runtime.wake import FileWatch, Watched
from gastown_units.town.layout import Town
from gastown_units.town.stores import signature, store_dirs

GUARD = 20.0  # a broken wake would otherwise wait for the (long) interval


def _wait_gap(watch: FileWatch, timeout: float = 5.0) -> float | None:
    """The gap of the first counting event within ``timeout`` (None if none)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gap = watch.drain()
        if gap is not None:
            return gap
        time.sleep(0.02)
    return None


def _rename_into(directory: Path, name: str, text: str = "{}") -> None:
    tmp = directory / f".{name}.tmp"
    tmp.write_text(text)
    os.rename(tmp, directory / name)


# --- FileWatch ------------------------------------------------------------------------------
def test_a_named_file_wakes_and_others_do_not(tmp_path: Path) -> None:
    mayor = tmp_path / "mayor"
    mayor.mkdir()
    watch = FileWatch()
    try:
        assert watch.fd is not None
        watch.update([Watched(mayor, frozenset({"rigs.json"}), gap=0.5)])
        (mayor / "town.json").write_text("{}")
        assert _wait_gap(watch, 0.3) is None  # not a watched name
        _rename_into(mayor, "rigs.json")  # how Gas Town writes it: tmp + rename
        assert _wait_gap(watch) == 0.5
    finally:
        watch.close()


def test_the_smallest_gap_of_the_changes_counts(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    watch = FileWatch()
    try:
        watch.update([Watched(a, gap=3.0), Watched(b, gap=1.0)])
        (a / "x").write_text("1")
        (b / "y").write_text("1")
        time.sleep(0.05)  # both events are queued before the one drain (not a sync point)
        assert _wait_gap(watch) == 1.0
    finally:
        watch.close()


def test_ignored_names_do_not_wake(tmp_path: Path) -> None:
    store = tmp_path / ".beads"
    store.mkdir()
    watch = FileWatch()
    try:
        watch.update([Watched(store, ignore=frozenset({".standin.lock"}))])
        (store / ".standin.lock").write_text("")  # a reader's lock file
        assert _wait_gap(watch, 0.3) is None
        (store / "issues.jsonl").write_text("{}\n")
        assert _wait_gap(watch) == 1.0
    finally:
        watch.close()


def test_a_directory_that_appears_later_is_watched_after_update(tmp_path: Path) -> None:
    """``gt rig park`` may create ``.beads-wisp/config`` for the first time."""
    config = tmp_path / ".beads-wisp" / "config"
    watched = [Watched(config, frozenset({"r.json"}))]
    watch = FileWatch()
    try:
        watch.update(watched)  # missing: skipped, no error
        config.mkdir(parents=True)
        watch.update(watched)
        _rename_into(config, "r.json")
        assert _wait_gap(watch) == 1.0
    finally:
        watch.close()


def test_a_replaced_directory_is_watched_again(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    watched = [Watched(units, frozenset({"town-down.json"}))]
    watch = FileWatch()
    try:
        watch.update(watched)
        os.rename(units, tmp_path / "old")
        units.mkdir()
        watch.drain()  # the rename of the old directory itself is an event
        watch.update(watched)
        _rename_into(units, "town-down.json")
        assert _wait_gap(watch) == 1.0
    finally:
        watch.close()


def test_a_dropped_watch_is_silent(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    watch = FileWatch()
    try:
        watch.update([Watched(d)])
        watch.update([])
        (d / "x").write_text("1")
        assert _wait_gap(watch, 0.3) is None
    finally:
        watch.close()


# --- Cached ---------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_fact_is_reused_while_its_source_looks_the_same() -> None:
    clock, reads = Clock(), []
    fact: Cached[str] = Cached(300, clock=clock)

    def read() -> str:
        reads.append(1)
        return f"v{len(reads)}"

    assert fact.get(("a",), read) == "v1" and not fact.reused
    clock.now = 100
    assert fact.get(("a",), read) == "v1" and fact.reused
    assert fact.get(("b",), read) == "v2"  # the source changed
    clock.now = 401
    assert fact.get(("b",), read) == "v3"  # too old, even with the same look
    assert len(reads) == 3


def test_an_unseen_source_is_read_every_time() -> None:
    fact: Cached[int] = Cached(300)
    values = iter(range(10))
    assert [fact.get(None, lambda: next(values)) for _ in range(3)] == [0, 1, 2]


def test_a_failed_read_is_not_kept_and_drops_the_old_fact() -> None:
    fact: Cached[str] = Cached(300)
    assert fact.get(("a",), lambda: "old") == "old"

    def fail() -> str:
        raise RuntimeError("bd failed")

    with pytest.raises(RuntimeError):
        fact.get(("b",), fail)
    assert fact.get(("a",), lambda: "fresh") == "fresh"  # the old one was not kept


def test_forget_reads_again() -> None:
    fact: Cached[str] = Cached(300)
    fact.get(("a",), lambda: "old")
    fact.forget()
    assert fact.get(("a",), lambda: "new") == "new"


# --- the stores' look -------------------------------------------------------------------------
def _town(tmp_path: Path) -> Town:
    root = tmp_path / "town"
    (root / "mayor").mkdir(parents=True)
    (root / "mayor" / "town.json").write_text(json.dumps({"type": "town", "name": "t"}))
    (root / ".beads").mkdir()
    (root / ".beads" / "issues.jsonl").write_text("")
    rig_store = root / "gastown" / "mayor" / "rig" / ".beads"
    rig_store.mkdir(parents=True)
    (rig_store / "issues.jsonl").write_text("")
    (root / "gastown" / ".beads").mkdir()
    (root / "gastown" / ".beads" / "redirect").write_text("mayor/rig/.beads\n")
    (root / ".beads" / "routes.jsonl").write_text(
        json.dumps({"prefix": "gt-", "path": "gastown/mayor/rig"}) + "\n")
    return Town(root)


def test_the_stores_are_the_towns_the_routed_and_the_redirected(tmp_path: Path) -> None:
    """beads.md §7.1 (redirect, one hop), §7.6 (routes): as Gas Town builds a town."""
    town = _town(tmp_path)
    stores = store_dirs(town)
    assert town.root / ".beads" in stores
    assert town.root / "gastown" / "mayor" / "rig" / ".beads" in stores


def test_the_look_changes_with_a_write_and_not_with_a_read(tmp_path: Path) -> None:
    town = _town(tmp_path)
    stores = store_dirs(town)
    before = signature(stores)
    assert before is not None
    (town.root / ".beads" / ".standin.lock").write_text("")  # a reader's flock file
    assert signature(stores) == before
    rig = town.root / "gastown" / "mayor" / "rig" / ".beads"
    _rename_into(rig, "issues.jsonl", '{"id": "gt-1"}\n')  # a write: tmp + rename
    assert signature(stores) != before


def test_a_store_without_data_files_cannot_be_seen(tmp_path: Path) -> None:
    """A Dolt server keeps its data elsewhere (beads.md §7.4): no look, always read."""
    store = tmp_path / ".beads"
    store.mkdir()
    (store / "metadata.json").write_text(json.dumps({"backend": "dolt", "dolt_mode": "server"}))
    assert signature([store]) is None


def test_an_embedded_dolt_store_is_seen(tmp_path: Path) -> None:
    noms = tmp_path / ".beads" / "dolt" / "hq" / ".dolt" / "noms"
    noms.mkdir(parents=True)
    (noms / "manifest").write_text("1")
    before = signature([tmp_path / ".beads"])
    assert before is not None
    (noms / "LOCK").write_text("")
    assert signature([tmp_path / ".beads"]) == before
    (noms / "manifest").write_text("22")
    assert signature([tmp_path / ".beads"]) != before


# --- the loop -------------------------------------------------------------------------------
class Recorder:
    """A service that records its passes and stops after ``passes``."""

    name = "recorder"

    def __init__(self, watched: list[Watched], passes: int,
                 after_first: threading.Thread) -> None:
        self._watched = watched
        self.passes: list[tuple[float, bool]] = []
        self.limit = passes
        self.after_first = after_first

    def setup(self, ctx: Context) -> str:
        return "ready"

    def watched(self) -> list[Watched]:
        return self._watched

    def tick(self, ctx: Context) -> str:
        self.passes.append((time.monotonic(), ctx.reloaded))
        if len(self.passes) == 1:
            self.after_first.start()
        if len(self.passes) >= self.limit:
            raise Stopping()
        return "ok"

    def close(self) -> None:
        pass


def _guard() -> threading.Timer:
    timer = threading.Timer(GUARD, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.daemon = True
    timer.start()
    return timer


def test_a_watched_change_runs_a_pass_after_its_gap(tmp_path: Path) -> None:
    mayor = tmp_path / "mayor"
    mayor.mkdir()
    writer = threading.Thread(target=lambda: _rename_into(mayor, "daemon.json"))
    service = Recorder([Watched(mayor, frozenset({"daemon.json"}), gap=0.3)], 2, writer)
    guard = _guard()
    try:
        assert run_service(service, interval=3600, once=False) == 0
    finally:
        guard.cancel()
    assert len(service.passes) == 2, "the change did not wake the service"
    assert service.passes[1][0] - service.passes[0][0] >= 0.3  # the gap was kept
    assert service.passes[1][1] is False  # a change is not a reload


def test_a_reload_runs_a_pass_that_reads_afresh(tmp_path: Path) -> None:
    hup = threading.Thread(target=lambda: os.kill(os.getpid(), signal.SIGHUP))
    service = Recorder([], 2, hup)
    guard = _guard()
    try:
        assert run_service(service, interval=3600, once=False) == 0
    finally:
        guard.cancel()
    assert [reloaded for _, reloaded in service.passes] == [False, True]


# --- the Deacon's heartbeat thresholds --------------------------------------------------------
@pytest.mark.parametrize(("age", "soon", "stale"), [
    (60.0, 900.0 - 60.0 + 1.0, False),  # fresh: look again when it turns stale
    (1000.0, 1800.0 - 1000.0 + 1.0, True),  # stale: look again when it is kill-old
    (2000.0, None, True),  # past both: the interval (the kill is this pass's business)
    (None, None, False),  # no heartbeat file: nothing to wait for
])
def test_the_deacon_keeper_passes_when_the_heartbeat_crosses_a_threshold(
        age: float | None, soon: float | None, stale: bool) -> None:
    """GT_INTERVAL is only the safety net: a heartbeat that turns stale is acted on when it
    does (gastown.md §6.3: 15 min nudge, 30 min kill), not up to an interval later."""
    from gastown_units.config import Settings
    from gastown_units.runtime.notify import Notifier
    from gastown_units.services.deacon_keeper import DeaconKeeper

    keeper = DeaconKeeper(Settings(heartbeat_nudge=900.0, heartbeat_kill=1800.0))
    ctx = Context(Notifier(), lambda: False)
    keeper._next_look(age, ctx)
    assert ctx.soon == soon
    assert keeper._heartbeat_stale is stale


# --- who wakes for the restart state ------------------------------------------------------
def test_a_booked_restart_wakes_the_deacon_keeper_only(tmp_path: Path) -> None:
    """Every restart a polecat-health sweep books rewrites daemon/restart_state.json; only
    its ``deacon`` entry matters to a long-running service, so the other services (each
    witness and refinery, lifecycle-mail) must not run a pass for it. Their other daemon/
    files (the town going down) still wake them."""
    from gastown_units.config import Settings
    from gastown_units.services.deacon_keeper import DeaconKeeper
    from gastown_units.services.lifecycle_mail import LifecycleMail
    from tests.harness.town import make_town

    town = Town.open(make_town(tmp_path / "town"))
    woken: dict[str, list[bool]] = {}
    for service in (DeaconKeeper(Settings()), LifecycleMail(Settings())):
        service._town = town
        watch = FileWatch()
        try:
            watch.update(service.watched())
            _rename_into(town.daemon_dir, "restart_state.json", '{"agents": {}}')
            first = _wait_gap(watch, 0.5) is not None
            (town.daemon_dir / "shutdown.lock").write_text("")
            woken[service.name] = [first, _wait_gap(watch) is not None]
            (town.daemon_dir / "shutdown.lock").unlink()
            _wait_gap(watch, 0.2)
        finally:
            watch.close()
    assert woken == {"deacon-keeper": [True, True], "lifecycle-mail": [False, True]}
