"""polecat-health's wake-ups: the pending marker the tmux hooks leave, and the wait for a
backoff that ends (issue 12 items 2 and 3), against real tmux and the stand-ins."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from gastown_units.services.restart_tracker import _ts
from tests.harness.poll import poll_until
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import STANDINS, agent_record
from tests.tmux.test_polecat_health import RIG, crash, polecat, sweep

TRIGGERED = {"TRIGGER_UNIT": "gastown-polecat-health.path"}  # what systemd sets


def _event_file(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    events = run / "events"
    events.touch()
    return events


def test_a_sweep_takes_the_pending_marker(town: Path, tmux_server: PrivateTmux,
                                          tmp_path: Path) -> None:
    """The marker the hooks create is gone once a sweep ran: the .path unit's
    PathExists= would otherwise start sweeps forever."""
    events = _event_file(tmp_path)
    marker = events.with_name("events.pending")
    marker.touch()
    result = sweep(town, tmux_server, "--event-file", str(events))
    assert result.returncode == 0, result.stderr
    assert not marker.exists()


def test_an_event_during_the_sweep_sweeps_again(town: Path, tmux_server: PrivateTmux,
                                                tmp_path: Path) -> None:
    """A polecat that dies while the sweep runs (its marker appears after the sweep took
    the last one) is restarted by the same process: nothing waits for the timer."""
    events = _event_file(tmp_path)
    marker = events.with_name("events.pending")
    tree = polecat(town, tmux_server, "nux")
    first = agent_record(tree)["pid"]
    # The stand-in bd is slowed so that the kill surely lands inside the first sweep.
    (town / ".standin").mkdir(exist_ok=True)
    (town / ".standin" / "bd.delay").write_text("0.7\n")

    def kill_mid_sweep() -> None:
        poll_until(lambda: not marker.exists(), timeout=30, what="the sweep to begin")
        crash(tmux_server, tree, "nux")
        events.write_text("")  # what the hooks do
        marker.touch()

    marker.touch()
    killer = threading.Thread(target=kill_mid_sweep)
    killer.start()
    result = sweep(town, tmux_server, "--event-file", str(events), "--restart-backoff", "0")
    killer.join()
    assert result.returncode == 0, result.stderr
    assert "tmux events arrived during the sweep: sweeping again" in result.stderr
    record = agent_record(tree)
    assert record is not None and record["pid"] != first, result.stderr
    assert not marker.exists()


def _restarts(town: Path) -> dict:
    return json.loads((town / "daemon" / "restart_state.json").read_text())["agents"]


def test_a_triggered_sweep_restarts_when_the_backoff_ends(town: Path,
                                                          tmux_server: PrivateTmux,
                                                          tmp_path: Path) -> None:
    """Started by the .path/.timer unit, the sweep stays for a backoff that ends within
    GT_BACKOFF_WAIT and restarts the polecat then, not at the next timer tick."""
    events = _event_file(tmp_path)
    tree = polecat(town, tmux_server, "nux")
    args = ("--event-file", str(events), "--restart-backoff", "3", "--backoff-wait", "30")
    crash(tmux_server, tree, "nux")
    assert sweep(town, tmux_server, *args).returncode == 0  # restart 1: backoff 3 s
    second = poll_until(lambda: (r := agent_record(tree)) and r["pid"], timeout=30,
                        what="first restart")
    crash(tmux_server, tree, "nux")
    # The 3 s backoff may be over already on a loaded machine (stop 21's CI): the test
    # moves its end 6 s past now, so that the sweep surely judges it before it ends.
    state = json.loads((town / "daemon" / "restart_state.json").read_text())
    state["agents"][f"gt-{RIG}-nux"]["backoff_until"] = _ts(time.time() + 6)
    (town / "daemon" / "restart_state.json").write_text(json.dumps(state))
    ends = json_time(_restarts(town)[f"gt-{RIG}-nux"]["backoff_until"])
    result = sweep(town, tmux_server, *args, env=TRIGGERED)
    assert result.returncode == 0, result.stderr
    assert "restart backoff ends in" in result.stderr
    record = agent_record(tree)
    assert record is not None and record["pid"] != second, result.stderr
    assert os.stat(tree / ".agent" / "record.json").st_mtime >= ends


def test_a_backoff_that_ends_while_the_sweep_works_is_waited_for(town: Path,
                                                                 tmux_server: PrivateTmux,
                                                                 tmp_path: Path) -> None:
    """A polecat judged "backing off" whose backoff ends before the sweep is done (here a
    slow CRASHED_POLECAT mail for another polecat) is restarted by this sweep, not left
    dead until the next timer tick (the CI failure of stop 20)."""
    events = _event_file(tmp_path)
    nux, slit = polecat(town, tmux_server, "nux"), polecat(town, tmux_server, "slit")
    slow_gt = tmp_path / "slow-gt"
    slow_gt.write_text("#!/bin/sh\n"
                       '[ "$1 $2" = "mail send" ] && sleep 8\n'
                       f'exec {STANDINS / "gt"} "$@"\n')
    slow_gt.chmod(0o755)
    crash(tmux_server, nux, "nux")
    crash(tmux_server, slit, "slit")
    now = time.time()  # slit restarted once already; its backoff ends in 4 s
    state = {"agents": {f"gt-{RIG}-slit": {
        "last_restart": _ts(now - 1), "restart_count": 1, "backoff_until": _ts(now + 4),
        "crash_loop_since": None, "window_start": _ts(now - 1)}}}
    (town / "daemon" / "restart_state.json").write_text(json.dumps(state))
    result = sweep(town, tmux_server, "--event-file", str(events), "--restart-backoff", "30",
                   "--backoff-wait", "30", "--gt-bin", str(slow_gt), env=TRIGGERED)
    assert result.returncode == 0, result.stderr
    assert "backing off" in result.stderr, result.stderr  # judged before its end
    assert "waiting for it" in result.stderr, result.stderr
    assert f"gt-{RIG}-slit" in tmux_server.sessions(), result.stderr
    assert f"gt-{RIG}-nux" in tmux_server.sessions(), result.stderr


def test_a_sweep_started_by_hand_does_not_wait(town: Path, tmux_server: PrivateTmux,
                                              tmp_path: Path) -> None:
    """``systemctl start`` or ``--once`` by hand returns when its sweep is done."""
    events = _event_file(tmp_path)
    tree = polecat(town, tmux_server, "nux")
    args = ("--event-file", str(events), "--restart-backoff", "60", "--backoff-wait", "90")
    crash(tmux_server, tree, "nux")
    assert sweep(town, tmux_server, *args).returncode == 0
    poll_until(lambda: f"gt-{RIG}-nux" in tmux_server.sessions(), timeout=30,
               what="first restart")
    crash(tmux_server, tree, "nux")
    started = time.monotonic()
    result = sweep(town, tmux_server, *args)
    assert result.returncode == 0, result.stderr
    assert "backing off" in result.stderr and "waiting for it" not in result.stderr
    assert f"gt-{RIG}-nux" not in tmux_server.sessions()
    assert time.monotonic() - started < 60  # it did not sit out the 60 s backoff


def json_time(value: str) -> float:
    from gastown_units.town.jsonfile import parse_time

    parsed = parse_time(value)
    assert parsed is not None, value
    return parsed.timestamp()


def test_a_tmux_host_restart_waits_out_no_backoff(town: Path,
                                                  tmux_server: PrivateTmux) -> None:
    """The polecat was just restarted (backing off for 30 s) when the tmux server went
    (a reboot, ``systemctl restart gastown-tmux``): the next sweep brings it back at once,
    and the server's end does not count as one more of its crashes."""
    tree = polecat(town, tmux_server, "nux")
    crash(tmux_server, tree, "nux")
    assert sweep(town, tmux_server).returncode == 0
    restarted = poll_until(lambda: (p := tmux_server.pane(f"gt-{RIG}-nux")) and p[0],
                           timeout=30, what="the first restart")
    booked = _restarts(town)[f"gt-{RIG}-nux"]
    assert booked["restart_count"] == 1
    # tmux tells its start time in whole seconds: let the next second begin
    state = town / "daemon" / "restart_state.json"
    poll_until(lambda: time.time() - os.stat(state).st_mtime >= 1.1, timeout=10,
               what="a second to pass")
    tmux_server.stop()
    tmux_server.start()
    result = sweep(town, tmux_server)
    assert result.returncode == 0, result.stderr
    assert "ended with the tmux server, which started after its last restart" in result.stderr
    back = poll_until(lambda: (p := tmux_server.pane(f"gt-{RIG}-nux")) and p[0], timeout=30,
                      what="the polecat back after the host restart")
    assert back != restarted
    after = _restarts(town)[f"gt-{RIG}-nux"]
    assert (after["restart_count"], after["backoff_until"]) == (
        1, booked["backoff_until"])
