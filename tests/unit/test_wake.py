"""Event wakes survive a restart of the tmux host unit (issue 8 item 7); an unlinked
town lock wakes the loop (an [L] ``gt down && gt up``).

The unit's runtime directory is removed and made anew on a restart; the watch must follow
it to the new directory, or a long-running service never wakes on tmux events again.
"""

from __future__ import annotations

import os
import select
import shutil
import threading
import time
from pathlib import Path

from gastown_units.runtime.loop import _Signals
from gastown_units.runtime.wake import EventWatch, UnlinkWatch


def woken(watch: EventWatch, timeout: float = 2.0) -> bool:
    assert watch.fd is not None
    ready, _, _ = select.select([watch.fd], [], [], timeout)
    watch.drain()
    return bool(ready)


def test_the_watch_follows_a_recreated_directory(tmp_path: Path) -> None:
    run = tmp_path / "gastown-tmux"
    run.mkdir()
    event = run / "events"
    event.touch()
    watch = EventWatch(event)
    try:
        event.write_text("x")
        assert woken(watch)
        shutil.rmtree(run)  # gastown-tmux.service stops: RuntimeDirectory removed
        woken(watch, 0.2)  # the removal itself may wake us; either way
        watch.arm()  # no directory: nothing to watch, no error
        run.mkdir()  # ... and starts again
        watch.arm()  # what the service loop does before every wait
        event.write_text("y")
        assert woken(watch), "no wake after the tmux host restarted"
    finally:
        watch.close()


def test_a_new_watch_asks_for_a_pass(tmp_path: Path) -> None:
    """Events of a tmux host that came back before the watch did are lost: look at once."""
    run = tmp_path / "gastown-tmux"
    event = run / "events"
    watch = EventWatch(event)  # the tmux host is not up yet
    try:
        assert watch.waiting_for_directory
        assert watch.arm() is False  # still no directory
        run.mkdir()
        event.touch()  # tmux-ready touches it before we are watching
        assert watch.arm() is True
        assert not watch.waiting_for_directory
        assert watch.arm() is False  # the same directory: nothing new
        shutil.rmtree(run)
        woken(watch, 0.5)  # IN_DELETE_SELF / IN_IGNORED: the watch is over
        assert watch.waiting_for_directory
        run.mkdir()
        assert watch.arm() is True
    finally:
        watch.close()


def test_the_loop_wait_returns_when_the_directory_comes_back(tmp_path: Path) -> None:
    run = tmp_path / "gastown-tmux"
    run.mkdir()
    watch = EventWatch(run / "events")
    signals = _Signals()
    try:
        shutil.rmtree(run)
        signals.wait(30, watch)  # the removal wakes us
        signals.wake = False
        threading.Timer(0.3, run.mkdir).start()
        started = time.monotonic()
        signals.wait(60, watch)  # polls for the directory instead of sleeping 60 s
        while not signals.wake and time.monotonic() - started < 30:
            signals.wait(60, watch)
        assert signals.wake, "no pass asked for once the directory was back"
        assert time.monotonic() - started < 30
    finally:
        watch.close()
        signals.restore()


def unlink_woken(watch: UnlinkWatch, timeout: float = 2.0) -> bool:
    assert watch.fd is not None
    ready, _, _ = select.select([watch.fd], [], [], timeout)
    return bool(ready) and watch.drain()


def test_the_unlink_watch_wakes_on_the_lock_file_only(tmp_path: Path) -> None:
    """[L] gt down / gt daemon stop unlink daemon.lock (gastown-2026.md §6.11): a pass
    must re-take it at once; the keeper's own rewrites of state.json beside it are not a
    reason to wake (they happen every pass)."""
    lock = tmp_path / "daemon" / "daemon.lock"
    lock.parent.mkdir()
    lock.touch()
    watch = UnlinkWatch(lock)
    try:
        state = lock.with_name("state.json")
        tmp = lock.with_name(".state.json.tmp")
        tmp.write_text("{}")
        os.replace(tmp, state)  # an atomic write beside the lock
        pid = lock.with_name("daemon.pid")
        pid.touch()
        pid.unlink()  # gt down removes daemon.pid too
        state.unlink()
        assert not unlink_woken(watch, 0.3)
        lock.unlink()  # gt down, phase 4
        assert unlink_woken(watch)
        lock.touch()  # re-created (by one of us): no wake for that
        assert not unlink_woken(watch, 0.3)
        fresh = lock.with_name("daemon.lock.new")
        fresh.touch()
        os.replace(fresh, lock)  # a `gt daemon run` won a new file: replaced
        assert unlink_woken(watch)
    finally:
        watch.close()


def test_the_loop_wait_returns_when_the_lock_is_unlinked(tmp_path: Path) -> None:
    lock = tmp_path / "daemon.lock"
    lock.touch()
    watch = UnlinkWatch(lock)
    signals = _Signals()
    timer = threading.Timer(0.3, lock.unlink)
    try:
        timer.start()
        started = time.monotonic()
        while not signals.wake and time.monotonic() - started < 30:
            signals.wait(60, None, watch)
        assert signals.wake, "no pass asked for when daemon.lock was unlinked"
        assert time.monotonic() - started < 30
    finally:
        timer.cancel()
        timer.join()
        watch.close()
        signals.restore()


def test_the_loop_wakes_for_wanted_sessions_only(tmp_path: Path) -> None:
    """The hooks' per-session marker wakes a service only for a session it wants; the
    event file itself (older hooks), or a marker without a name, wakes it whatever it
    wants; the pending marker (polecat-health's) wakes nobody."""
    run = tmp_path / "gastown-tmux"
    run.mkdir()
    event = run / "events"
    event.touch()
    watch = EventWatch(event)
    signals = _Signals()
    ours = {"gt-gastown-witness"}
    try:
        for name, wakes in [("events.closed.gt-gastown-nux", False),
                            ("events.pending", False),
                            ("events.closed.gt-gastown-witness", True),
                            ("events", True),
                            ("events.closed.", True)]:
            signals.wake = False
            (run / name).write_text("")
            signals.wait(0.5, watch, wants=ours.__contains__)
            assert signals.wake is wakes, name
        signals.wake = False
        (run / "events.closed.gt-gastown-nux").write_text("")
        signals.wait(0.5, watch)  # a service that names no sessions: every one wakes it
        assert signals.wake
    finally:
        watch.close()
        signals.restore()
