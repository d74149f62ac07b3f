"""polecat-health's wake-ups: the tmux hooks' markers, the end of a backoff and a changed
rig registry wake the running service (issue 12 items 1-3), against real tmux and the
stand-ins; the pending marker is taken by every sweep."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

from tests.harness import keeper
from tests.harness.gitrig import add_polecat, make_rig_repos
from tests.harness.poll import poll_until
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import agent_record, hook_work, make_town
from tests.tmux.test_polecat_health import RIG, crash, polecat, sweep
from tests.tmux.test_session_wakes import set_hooks
from tests.tmux.test_wake_on_change import Output


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


def _resident(town: Path, server: PrivateTmux, events: Path, *args: str
              ) -> tuple[subprocess.Popen[str], Output]:
    """polecat-health as its unit runs it (long-running), with the real tmux hooks set
    and an interval of an hour: whatever it does within a test, an event woke it for."""
    set_hooks(server, events)
    proc = keeper.start("polecat-health", town, server.socket, "--interval", "1h", "--debug",
                        *args, env={"GT_EVENT_FILE": str(events)})
    out = Output(proc)
    poll_until(lambda: out.has("pass over:"), timeout=30, what="the first sweep over")
    return proc, out


def _restarted(tree: Path, old: int, out: Output, count: int) -> int:
    """The new agent's PID, once the service told its ``count``-th restart (its start
    is over: a death during the start's checks leaves a dead pane, not a closed session)."""
    pid = poll_until(lambda: (r := agent_record(tree)) and r["pid"] != old and r["pid"],
                     timeout=30, what="the polecat restarted")
    poll_until(lambda: out.count(f"restarted gt-{RIG}-nux") >= count, timeout=30,
               what=f"restart {count} told")
    return pid


def _settled(out: Output, quiet: float = 1.5) -> None:
    """Wait until the service printed nothing for ``quiet`` seconds after a pass (the
    wakes its own first writes cause, e.g. of the town lock, are over)."""
    seen = {"n": -1, "at": time.monotonic()}

    def still() -> bool:
        n = len(out.lines)
        if n != seen["n"]:
            seen.update(n=n, at=time.monotonic())
            return False
        return time.monotonic() - seen["at"] >= quiet and "pass over:" in out.lines[-1]
    poll_until(still, timeout=30, what="the service to settle")


def test_the_service_restarts_a_killed_polecat_and_sleeps_through_other_roles(
        town: Path, tmux_server: PrivateTmux, tmp_path: Path) -> None:
    """The end of the rig's Witness session names another role: no sweep; each death of
    the polecat is swept at once (a session-closed hook, no process started)."""
    tree = polecat(town, tmux_server, "nux")
    pid = agent_record(tree)["pid"]
    events = tmp_path / "run" / "events"
    proc, out = _resident(town, tmux_server, events, "--restart-backoff", "0")
    try:
        _settled(out)
        passes = out.count("pass over:")
        tmux_server.tmux("new-session", "-d", "-s", f"gt-{RIG}-witness", "sleep 300")
        tmux_server.tmux("kill-session", "-t", f"=gt-{RIG}-witness")
        poll_until(lambda: out.has(f"tmux event for gt-{RIG}-witness: not our agent's"),
                   timeout=30, what="the Witness's end told as not ours")
        assert out.count("pass over:") == passes, "woken by the Witness's session"
        for count in (1, 2):
            crash(tmux_server, tree, "nux")
            pid = _restarted(tree, pid, out, count)
    finally:
        code, _ = keeper.stop(proc)
        print("".join(out.lines))  # shown when the test fails
    text = "".join(out.lines)
    assert code == 0, text
    assert text.count("CRASH DETECTED: polecat gastown/nux") == 2, text
    assert "Traceback" not in text


def test_a_polecat_killed_in_backoff_is_restarted_when_the_backoff_ends(
        town: Path, tmux_server: PrivateTmux, tmp_path: Path) -> None:
    """Killed again during its restart backoff, the polecat is held, and the sweep at the
    backoff's end (not the hour's safety net, not another event) restarts it."""
    tree = polecat(town, tmux_server, "nux")
    pid = agent_record(tree)["pid"]
    events = tmp_path / "run" / "events"
    proc, out = _resident(town, tmux_server, events, "--restart-backoff", "3")
    try:
        crash(tmux_server, tree, "nux")
        pid = _restarted(tree, pid, out, 1)  # restart 1: a backoff of 3 s begins
        crash(tmux_server, tree, "nux")
        poll_until(lambda: out.has("restart backoff ends in"), timeout=30,
                   what="the held polecat's backoff told")
        ends = json_time(_restarts(town)[f"gt-{RIG}-nux"]["backoff_until"])
        _restarted(tree, pid, out, 2)
        assert os.stat(tree / ".agent" / "record.json").st_mtime >= ends
    finally:
        code, _ = keeper.stop(proc)
        print("".join(out.lines))  # shown when the test fails
    text = "".join(out.lines)
    assert code == 0, text
    assert "backing off" in text and "Traceback" not in text
    assert not events.with_name("events.pending").exists()


def test_a_rig_added_while_it_runs_is_swept(tmp_path: Path, tmux_server: PrivateTmux
                                             ) -> None:
    """``gt rig add`` rewrites mayor/rigs.json: the running service sweeps the new rig's
    polecats from then on, without a restart (here: one dead with hooked work)."""
    town = make_town(tmp_path / "town", rigs={RIG: "gt", "beads": "bd"})
    registry = town / "mayor" / "rigs.json"
    both = json.loads(registry.read_text())
    only = {**both, "rigs": {RIG: both["rigs"][RIG]}}
    registry.write_text(json.dumps(only))
    make_rig_repos(town / "beads")
    tree = add_polecat(town / "beads", "beads", "toast")
    hook_work(town, "beads", "toast", prefix="bd")
    proc, out = _resident(town, tmux_server, tmp_path / "run" / "events")
    try:
        assert "gt-beads-toast" not in tmux_server.sessions()
        registry.write_text(json.dumps(both))
        poll_until(lambda: agent_record(tree), timeout=30, what="the new rig's polecat")
        assert "gt-beads-toast" in tmux_server.sessions()
    finally:
        code, _ = keeper.stop(proc)
    assert code == 0, "".join(out.lines)


def test_a_sweep_by_hand_does_not_wait(town: Path, tmux_server: PrivateTmux,
                                       tmp_path: Path) -> None:
    """``--once`` (an operator's sweep) returns when its sweep is done: a backoff that
    ends later is left to the running service."""
    events = _event_file(tmp_path)
    tree = polecat(town, tmux_server, "nux")
    args = ("--event-file", str(events), "--restart-backoff", "60")
    crash(tmux_server, tree, "nux")
    assert sweep(town, tmux_server, *args).returncode == 0
    poll_until(lambda: f"gt-{RIG}-nux" in tmux_server.sessions(), timeout=30,
               what="first restart")
    crash(tmux_server, tree, "nux")
    started = time.monotonic()
    result = sweep(town, tmux_server, *args)
    assert result.returncode == 0, result.stderr
    assert "backing off" in result.stderr
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
