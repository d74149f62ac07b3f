"""deacon-keeper against a real tmux server on a private socket and the stand-in agent."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.harness import keeper
from tests.harness.poll import poll_until, wait_gone
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import agent_record, control_agent

DEGRADED = ("--degraded", "true")


def _deacon_dir(town: Path) -> Path:
    return town / "deacon"


def _starts(workdir: Path) -> int:
    path = workdir / ".agent" / "starts.log"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _write_heartbeat(town: Path, minutes_old: float) -> None:
    ts = datetime.now(UTC) - timedelta(minutes=minutes_old)
    (town / "deacon" / "heartbeat.json").write_text(json.dumps({
        "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "cycle": 3,
        "healthy_agents": 1, "unhealthy_agents": 0}))


def test_starts_the_deacon_with_its_role_environment(town: Path,
                                                     tmux_server: PrivateTmux) -> None:
    result = keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED)
    assert result.returncode == 0, result.stderr
    assert "hq-deacon" in tmux_server.sessions()
    record = poll_until(lambda: agent_record(_deacon_dir(town)), timeout=20,
                        what="stand-in agent record")
    env = record["env"]
    assert (env["GT_ROLE"], env["BD_ACTOR"], env["GIT_AUTHOR_NAME"]) == ("deacon",) * 3
    assert env["GT_ROOT"] == str(town)
    assert "NOTIFY_SOCKET" not in env and "WATCHDOG_USEC" not in env
    assert Path(record["cwd"]) == town / "deacon"
    prompt = record["argv"][-1]
    assert prompt.startswith("[GAS TOWN] deacon <- daemon • ") and "I am Deacon." in prompt
    pid, command = tmux_server.pane("hq-deacon")
    assert command not in ("bash", "sh") and pid == record["pid"]
    style = tmux_server.tmux("show-options", "-t", "=hq-deacon:", "-v", "status-style").stdout
    assert "bg=#2d1f3d" in style


def test_a_running_deacon_is_left_alone(town: Path, tmux_server: PrivateTmux) -> None:
    assert keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED).returncode == 0
    first = poll_until(lambda: tmux_server.pane("hq-deacon"), timeout=10, what="pane")
    assert keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED).returncode == 0
    assert tmux_server.pane("hq-deacon")[0] == first[0]
    assert _starts(_deacon_dir(town)) == 1


def test_a_zombie_session_is_killed_and_recreated(town: Path, tmux_server: PrivateTmux) -> None:
    (town / "deacon").mkdir(exist_ok=True)
    tmux_server.tmux("new-session", "-d", "-s", "hq-deacon", "-c", str(town / "deacon"),
                     "exec bash --norc --noprofile")
    shell_pid, command = poll_until(lambda: tmux_server.pane("hq-deacon"), timeout=10,
                                    what="shell pane")
    assert command == "bash"
    result = keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED)
    assert result.returncode == 0, result.stderr
    assert "zombie" in result.stderr
    pid, command = tmux_server.pane("hq-deacon")
    assert pid != shell_pid and command != "bash"
    wait_gone(shell_pid)


def test_a_crashed_agent_is_replaced(town: Path, tmux_server: PrivateTmux) -> None:
    assert keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED).returncode == 0
    first_pid, _ = poll_until(lambda: tmux_server.pane("hq-deacon"), timeout=10, what="pane")
    control_agent(_deacon_dir(town), "crash")
    poll_until(lambda: "hq-deacon" not in tmux_server.sessions(), timeout=20,
               what="session gone after the crash")
    assert keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED).returncode == 0
    pid, _ = tmux_server.pane("hq-deacon")
    assert pid != first_pid and _starts(_deacon_dir(town)) == 2
    status = json.loads((town / "deacon/dogs/boot/.boot-status.json").read_text())
    assert (status["last_action"], status["target"], status["running"]) == (
        "start", "deacon", False)


def test_boot_is_spawned_when_not_degraded(town: Path, tmux_server: PrivateTmux) -> None:
    assert keeper.run_once("deacon-keeper", town, tmux_server.socket).returncode == 0
    assert {"hq-deacon", "gt-boot"} <= tmux_server.sessions()
    record = poll_until(lambda: agent_record(town / "deacon/dogs/boot"), timeout=20,
                        what="boot agent record")
    assert (record["env"]["GT_ROLE"], record["env"]["BD_ACTOR"]) == ("boot", "deacon-boot")
    assert record["argv"][-1].endswith("Run `gt boot triage` now.")


def test_stale_heartbeat_gets_a_nudge(town: Path, tmux_server: PrivateTmux) -> None:
    assert keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED).returncode == 0
    pane = tmux_server.pane("hq-deacon")
    _write_heartbeat(town, minutes_old=20)
    result = keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED,
                             "--deacon-grace", "0",
                             env={"STANDIN_HEARTBEAT_SECONDS": "0"})
    assert result.returncode == 0, result.stderr
    log = _deacon_dir(town) / ".agent" / "input.log"
    poll_until(lambda: log.exists() and "HEALTH_CHECK: heartbeat stale" in log.read_text(),
               timeout=20, what="HEALTH_CHECK nudge in the agent's input")
    assert tmux_server.pane("hq-deacon")[0] == pane[0]  # nudged, not restarted
    status = json.loads((town / "deacon/dogs/boot/.boot-status.json").read_text())
    assert (status["last_action"], status["target"]) == ("nudge", "deacon-stale")


def test_very_stale_heartbeat_restarts_the_deacon(town: Path, tmux_server: PrivateTmux) -> None:
    env = {"STANDIN_HEARTBEAT_SECONDS": "0"}
    assert keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED,
                           env=env).returncode == 0
    old_pid, _ = tmux_server.pane("hq-deacon")
    _write_heartbeat(town, minutes_old=45)
    result = keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED,
                             "--deacon-grace", "0", env=env)
    assert result.returncode == 0, result.stderr
    new_pid, _ = tmux_server.pane("hq-deacon")
    assert new_pid != old_pid
    wait_gone(old_pid)
    status = json.loads((town / "deacon/dogs/boot/.boot-status.json").read_text())
    assert status["target"] in ("deacon-stuck", "deacon")


def test_grace_period_protects_a_fresh_deacon(town: Path, tmux_server: PrivateTmux) -> None:
    env = {"STANDIN_HEARTBEAT_SECONDS": "0"}
    assert keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED,
                           env=env).returncode == 0
    pane = tmux_server.pane("hq-deacon")
    _write_heartbeat(town, minutes_old=45)
    assert keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED,
                           env=env).returncode == 0
    assert tmux_server.pane("hq-deacon")[0] == pane[0]


def test_disabled_patrol_starts_nothing(town: Path, tmux_server: PrivateTmux) -> None:
    (town / "mayor" / "daemon.json").write_text(json.dumps(
        {"type": "daemon-patrol-config", "version": 1,
         "patrols": {"deacon": {"enabled": False}}}))
    result = keeper.run_once("deacon-keeper", town, tmux_server.socket)
    assert result.returncode == 0
    assert tmux_server.sessions() == set()


def test_a_damaged_daemon_json_does_not_leave_a_killed_deacon_dead(
        town: Path, tmux_server: PrivateTmux) -> None:
    """Gas Town reads a missing or unparseable daemon.json as "every patrol on" (§6.9): the
    Deacon is kept, and the damage is named every pass (exit 1 with --once)."""
    (town / "mayor" / "daemon.json").write_bytes(b'{"patrols": {"deacon": ')
    result = keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "daemon.json" in result.stderr and "acting as if enabled" in result.stderr
    assert "hq-deacon" in tmux_server.sessions()


def test_gt_down_shutdown_lock_pauses_the_keeper(town: Path, tmux_server: PrivateTmux) -> None:
    path = town / "daemon" / "shutdown.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert keeper.run_once("deacon-keeper", town, tmux_server.socket).returncode == 0
        assert tmux_server.sessions() == set()
    finally:
        os.close(fd)
    # gt down leaves the town down: the mark written during the shutdown holds
    result = keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED)
    assert result.returncode == 0 and "town down since" in result.stderr
    assert tmux_server.sessions() == set()
    resumed = subprocess.run([sys.executable, "-m", "gastown_units", "resume", "--town",
                              str(town)], capture_output=True, text=True, timeout=60,
                             env=keeper.service_env())
    assert resumed.returncode == 0, resumed.stderr
    assert keeper.run_once("deacon-keeper", town, tmux_server.socket,
                           *DEGRADED).returncode == 0
    assert "hq-deacon" in tmux_server.sessions()


def test_refuses_to_run_beside_gt_daemon(town: Path, tmux_server: PrivateTmux) -> None:
    fd = os.open(town / "daemon" / "daemon.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = keeper.run_once("deacon-keeper", town, tmux_server.socket)
    finally:
        os.close(fd)
    assert result.returncode == 78
    assert "gt daemon" in result.stderr and "Traceback" not in result.stderr
    assert tmux_server.sessions() == set()


def test_never_starts_a_tmux_server(town: Path) -> None:
    server = PrivateTmux()  # not started
    try:
        result = keeper.run_once("deacon-keeper", town, server.socket)
        assert result.returncode == 0, result.stderr
        assert server.tmux("list-sessions", check=False).returncode != 0
        assert not Path(f"/tmp/tmux-{os.getuid()}/{server.socket}").exists()
    finally:
        server.stop()


def test_agent_that_never_comes_up_is_removed(town: Path, tmux_server: PrivateTmux) -> None:
    argv = keeper.service_argv("deacon-keeper", town, tmux_server.socket, "--once",
                               *DEGRADED, "--start-timeout", "1")
    argv[argv.index("--agent-command") + 1] = "sh -c 'exec bash --norc'"  # stays a shell
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                            env=keeper.service_env())
    assert result.returncode == 1
    assert "did not start within 1s" in result.stderr and "Traceback" not in result.stderr
    assert "hq-deacon" not in tmux_server.sessions()


def test_bypass_dialog_is_accepted(town: Path, tmux_server: PrivateTmux) -> None:
    (town / "deacon" / ".agent").mkdir(parents=True)
    (town / "deacon" / ".agent" / "bypass-dialog").touch()
    assert keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED).returncode == 0
    accepted = town / "deacon" / ".agent" / "bypass-accepted"
    poll_until(accepted.exists, timeout=20, what="bypass dialog accepted")


@pytest.mark.parametrize(("args", "message"), [
    (("--agent-command", "python3 'unclosed"), "No closing quotation"),
    (("--interval", "never"), "not a duration"),
])
def test_bad_configuration_exits_78_without_traceback(town: Path, tmux_server: PrivateTmux,
                                                      args: tuple[str, ...],
                                                      message: str) -> None:
    argv = keeper.service_argv("deacon-keeper", town, tmux_server.socket, "--once")
    argv += list(args)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                            env=keeper.service_env())
    assert result.returncode == 78, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert tmux_server.sessions() == set()


def test_sigterm_stops_cleanly_and_leaves_the_agent(town: Path,
                                                    tmux_server: PrivateTmux) -> None:
    proc = keeper.start("deacon-keeper", town, tmux_server.socket, *DEGRADED,
                        "--interval", "1")
    try:
        pane = poll_until(lambda: tmux_server.pane("hq-deacon"), timeout=30, what="deacon")
        # While we run, `gt daemon` cannot take its exclusive lock.
        fd = os.open(town / "daemon" / "daemon.lock", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        # A killed agent comes back within a few passes.
        control_agent(_deacon_dir(town), "crash")
        poll_until(lambda: (p := tmux_server.pane("hq-deacon")) and p[0] != pane[0],
                   timeout=30, what="deacon replaced by the running keeper")
        pane = tmux_server.pane("hq-deacon")
        proc.send_signal(signal.SIGHUP)  # a reload request is not a stop
        assert proc.poll() is None
    finally:
        code, out = keeper.stop(proc)
    assert code == 0, out
    assert "agent sessions are left running" in out
    assert tmux_server.pane("hq-deacon")[0] == pane[0]


def test_cli_basics() -> None:
    env = keeper.service_env()
    version = subprocess.run([sys.executable, "-m", "gastown_units", "--version"],
                             capture_output=True, text=True, env=env, timeout=30)
    assert version.returncode == 0 and "0.1.0" in version.stdout
    who = subprocess.run([sys.executable, "-m", "gastown_units", "identity",
                          "gastown/witness"], capture_output=True, text=True, env=env,
                         timeout=30)
    assert "session   gt-gastown-witness" in who.stdout


def test_status_lists_agents_through_libtmux(town: Path, tmux_server: PrivateTmux) -> None:
    (town / "gastown" / "polecats" / "nux").mkdir()
    # Two sessions (deacon and boot): libtmux 0.21 lists only one session's panes in
    # Server.panes, which this guards against.
    assert keeper.run_once("deacon-keeper", town, tmux_server.socket).returncode == 0
    pid, _ = poll_until(lambda: tmux_server.pane("hq-deacon"), timeout=10, what="deacon")
    boot, _ = poll_until(lambda: tmux_server.pane("gt-boot"), timeout=10, what="boot")
    result = subprocess.run(
        [sys.executable, "-m", "gastown_units", "status", "--town", str(town)],
        capture_output=True, text=True, timeout=30,
        env=keeper.service_env({"GT_TMUX_SOCKET": tmux_server.socket,
                                "GT_AGENT_COMMAND": "agent"}))
    # The rig's Witness and Refinery are expected and do not run: not OK, exit 1.
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "NOT OK: 2 problem(s): gastown/witness is missing; gastown/refinery is missing")
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:]}
    assert rows["deacon/"][1:4] == ["hq-deacon", "running", str(pid)]
    assert rows["deacon/dogs/boot"][1:4] == ["gt-boot", "running", str(boot)]
    assert rows["gastown/witness"][2] == "missing"
    assert rows["gastown/nux"][1:3] == ["gt-gastown-nux", "missing"]


def test_tmux_event_wakes_the_keeper_long_before_its_interval(
        town: Path, tmux_server: PrivateTmux, tmp_path: Path) -> None:
    events = tmp_path / "run" / "events"
    events.parent.mkdir()
    hooks = subprocess.run(
        [sys.executable, "-m", "gastown_units", "tmux-ready", "--event-file", str(events)],
        capture_output=True, text=True, timeout=30,
        env=keeper.service_env({"GT_TMUX_SOCKET": tmux_server.socket}))
    assert hooks.returncode == 0, hooks.stderr
    proc = keeper.start("deacon-keeper", town, tmux_server.socket, *DEGRADED,
                        "--interval", "1h", env={"GT_EVENT_FILE": str(events)})
    try:
        first = poll_until(lambda: (p := tmux_server.pane("hq-deacon")) and p[1] == "claude"
                           and p[0], timeout=30, what="deacon")
        control_agent(_deacon_dir(town), "crash")
        poll_until(lambda: (p := tmux_server.pane("hq-deacon")) and p[0] != first,
                   timeout=20, what="deacon replaced after the tmux event (interval is 1h)")
    finally:
        code, out = keeper.stop(proc)
    assert code == 0, out
