"""Gas Town's own commands beside the running services ([J] town): ``gt down`` leaves the
town down, ``gt up`` brings it back without a second daemon, an unlinked ``daemon.lock``
is re-taken, ``gt daemon status`` tells the truth (gastown.md §1.7, gastown-2026.md
§1.7, §6.11, §8 rows 8-10)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from gastown_units.ports.locks import flock_holders
from tests.harness import keeper
from tests.harness.poll import poll_until, wait_gone
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import STANDINS, control_agent

GT = STANDINS / "gt"
RIG = "gastown"
FAST = ("--interval", "0.3")
SESSIONS = ("hq-deacon", f"gt-{RIG}-witness", f"gt-{RIG}-refinery")


def gt(town: Path, server: PrivateTmux, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in server.env().items()
           if not k.startswith(("GT_", "BD_", "BEADS_", "STANDIN_"))}
    env["GT_STANDIN_TMUX_SOCKET"] = server.socket
    env["GT_TMUX_SOCKET"] = server.socket
    return subprocess.run([sys.executable, str(GT), *args], cwd=town, env=env,
                          capture_output=True, text=True, timeout=60)


def resume(town: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gastown_units", "resume", "--town",
                           str(town)], capture_output=True, text=True, timeout=60,
                          env=keeper.service_env())


def mark(town: Path) -> Path:
    return town / "daemon" / "units" / "town-down.json"


def beats(town: Path) -> int:
    """The deacon keeper's passes so far (daemon/state.json)."""
    return int(json.loads((town / "daemon" / "state.json").read_text())["heartbeat_count"])


def gt_daemons(town: Path) -> list[int]:
    """`gt daemon run` processes of this town."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        cmd = proc.info.get("cmdline") or []
        if cmd[-2:] == ["daemon", "run"] and proc.info.get("cwd") == str(town):
            found.append(proc.info["pid"])
    return found


def no_restart_for(town: Path, server: PrivateTmux, passes: int) -> None:
    """The keepers run ``passes`` more passes and start nothing meanwhile (polled)."""
    start = beats(town)

    def done() -> bool:
        assert not server.sessions() & set(SESSIONS), server.sessions()
        return beats(town) >= start + passes
    poll_until(done, timeout=60, what=f"{passes} more passes of the deacon keeper")


@pytest.fixture
def gt_town(town: Path) -> Path:
    (town / ".standin").mkdir(exist_ok=True)
    (town / ".standin" / "gt.dialect").write_text("J")  # the services serve [J] today
    (town / ".standin" / "gt.down-grace").write_text("1")
    return town


@pytest.fixture
def services(gt_town: Path, tmux_server: PrivateTmux
             ) -> Iterator[Callable[[], dict[str, str]]]:
    """deacon-keeper, witness and refinery of the rig, running; the fixture's value stops
    them and returns their output (each must exit 0)."""
    procs = {
        "deacon-keeper": keeper.start("deacon-keeper", gt_town, tmux_server.socket,
                                      "--degraded", "true", *FAST),
        "witness": keeper.start("witness", gt_town, tmux_server.socket, "--rig", RIG, *FAST),
        "refinery": keeper.start("refinery", gt_town, tmux_server.socket, "--rig", RIG,
                                 *FAST),
    }
    outputs: dict[str, str] = {}

    def stop() -> dict[str, str]:
        for name, proc in procs.items():
            if name not in outputs:
                code, out = keeper.stop(proc)
                outputs[name] = out
                assert code == 0, f"{name} exited {code}:\n{out}"
        return outputs
    try:
        yield stop
    finally:
        for name, proc in procs.items():
            if name not in outputs:
                keeper.stop(proc)


def _all_up(server: PrivateTmux) -> dict[str, int]:
    panes = {s: server.pane(s) for s in SESSIONS}
    if all(p and p[1] == "claude" for p in panes.values()):
        return {s: p[0] for s, p in panes.items() if p}
    return {}


def test_gt_down_leaves_the_town_down_and_gt_up_brings_it_back_gastown_2026_6_11(
        gt_town: Path, tmux_server: PrivateTmux,
        services: Callable[[], dict[str, str]]) -> None:
    poll_until(lambda: _all_up(tmux_server), timeout=60, what="deacon, witness, refinery")
    down = gt(gt_town, tmux_server, "down")
    assert down.returncode == 0, down.stderr
    assert not tmux_server.sessions() & set(SESSIONS)
    data = json.loads(mark(gt_town).read_text())
    assert "gt down holds daemon/shutdown.lock" in data["reason"]
    no_restart_for(gt_town, tmux_server, passes=10)  # ~3 s of passes, nothing started
    status = gt(gt_town, tmux_server, "daemon", "status")
    assert status.stdout.startswith("○ Daemon is not running")  # [J]: daemon.pid is truth
    assert not (gt_town / "daemon" / "daemon.pid").exists()

    up = gt(gt_town, tmux_server, "up")
    # [J] gt up starts `gt daemon run`, which loses our lock and exits: reported, no daemon
    assert "✗ Daemon: daemon already running (lock held by another process)" in up.stdout
    assert up.returncode == 1
    assert gt_daemons(gt_town) == []
    assert flock_holders(gt_town / "daemon" / "daemon.lock", "WRITE") == []
    started = poll_until(lambda: _all_up(tmux_server), timeout=30, what="gt up's agents")
    assert "hq-mayor" in tmux_server.sessions()
    poll_until(lambda: not mark(gt_town).exists(), timeout=30,
               what="the town-down mark cleared by gt up's Deacon")
    # gt up's agents are kept, not replaced; a crash is repaired again (we act again)
    before = beats(gt_town)
    poll_until(lambda: beats(gt_town) >= before + 3, timeout=30, what="passes after gt up")
    assert _all_up(tmux_server) == started
    control_agent(gt_town / "deacon", "crash")
    poll_until(lambda: (p := tmux_server.pane("hq-deacon")) and p[1] == "claude"
               and p[0] != started["hq-deacon"], timeout=30,
               what="a crashed Deacon restarted after gt up")
    out = services()
    assert "town down since" in out["deacon-keeper"]
    assert "gt up): the town is up again, resuming" in "".join(out.values())
    for name, text in out.items():
        assert "Traceback" not in text, (name, text)


def test_resume_command_ends_the_mark_and_the_target_start_would_too(
        gt_town: Path, tmux_server: PrivateTmux,
        services: Callable[[], dict[str, str]]) -> None:
    poll_until(lambda: _all_up(tmux_server), timeout=60, what="deacon, witness, refinery")
    assert gt(gt_town, tmux_server, "down").returncode == 0
    no_restart_for(gt_town, tmux_server, passes=5)
    done = resume(gt_town)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("town resumed (it was down since ")
    assert "3 service(s) woken" in done.stdout
    poll_until(lambda: _all_up(tmux_server), timeout=60, what="agents started again")
    again = resume(gt_town)
    assert again.stdout.strip() == "the town is not marked down: nothing to resume"
    services()


def test_unlinked_lock_is_retaken_and_marks_the_town_down_gastown_2026_8_8(
        gt_town: Path, tmux_server: PrivateTmux,
        services: Callable[[], dict[str, str]]) -> None:
    lock = gt_town / "daemon" / "daemon.lock"
    pids = poll_until(lambda: _all_up(tmux_server), timeout=60, what="agents")
    holders = set(flock_holders(lock, "READ"))
    assert len(holders) == 3
    lock.unlink()  # what [L] gt down / gt daemon stop do to a lock held without daemon.pid
    poll_until(lambda: lock.exists() and set(flock_holders(lock, "READ")) == holders,
               timeout=30, what="every service holding a shared lock on the new file")
    fd = os.open(lock, os.O_RDWR)
    try:  # a `gt daemon run` started now loses
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    assert "daemon/daemon.lock was unlinked" in json.loads(mark(gt_town).read_text())["reason"]
    assert _all_up(tmux_server) == pids  # nothing killed
    control_agent(gt_town / "deacon", "crash")  # down: not restarted
    poll_until(lambda: "hq-deacon" not in tmux_server.sessions()
               or tmux_server.pane("hq-deacon") is None, timeout=30, what="deacon gone")
    no_restart_for_deacon = beats(gt_town)
    poll_until(lambda: beats(gt_town) >= no_restart_for_deacon + 5, timeout=30,
               what="passes")
    assert tmux_server.pane("hq-deacon") is None
    assert resume(gt_town).returncode == 0
    poll_until(lambda: (p := tmux_server.pane("hq-deacon")) and p[1] == "claude",
               timeout=60, what="deacon restarted after resume")
    out = services()
    lines = [line for line in out["deacon-keeper"].splitlines()
             if "took a shared lock on the new file again" in line]
    assert len(lines) == 1, lines  # told once


def test_lock_won_by_a_real_gt_daemon_stops_the_service_with_78(
        gt_town: Path, tmux_server: PrivateTmux) -> None:
    lock = gt_town / "daemon" / "daemon.lock"
    proc = keeper.start("deacon-keeper", gt_town, tmux_server.socket, "--degraded", "true",
                        *FAST)
    fd = -1
    try:
        poll_until(lambda: (p := tmux_server.pane("hq-deacon")) and p[1] == "claude",
                   timeout=60, what="deacon")
        pane = tmux_server.pane("hq-deacon")
        # a real `gt daemon run` won a new daemon.lock (after an [L] unlink): a new inode
        # at the path, held exclusively
        fresh = lock.with_name("daemon.lock.new")
        fd = os.open(fresh, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(fresh, lock)
        assert proc.wait(timeout=30) == 78
        out = proc.stdout.read() if proc.stdout else ""
        assert "was replaced, and a `gt daemon` now holds the new file exclusively" in out
        assert "Traceback" not in out
        assert tmux_server.pane("hq-deacon") == pane  # the agent untouched
    finally:
        keeper.stop(proc)
        if fd >= 0:
            os.close(fd)


@pytest.mark.parametrize("dialect", ["J", "L"])
def test_gt_daemon_status_beside_the_keeper_gastown_2026_6_11(
        gt_town: Path, tmux_server: PrivateTmux, dialect: str) -> None:
    proc = keeper.start("deacon-keeper", gt_town, tmux_server.socket, "--degraded", "true",
                        *FAST)
    try:
        poll_until(lambda: (gt_town / "daemon" / "state.json").exists() and beats(gt_town) > 1,
                   timeout=60, what="daemon/state.json")
        state_path = gt_town / "daemon" / "state.json"
        assert state_path.stat().st_mode & 0o777 == 0o644
        state = json.loads(state_path.read_text())
        assert state["running"] is True and state["pid"] == proc.pid
        (gt_town / ".standin" / "gt.dialect").write_text(dialect)
        lines = gt(gt_town, tmux_server, "daemon", "status").stdout.splitlines()
        if dialect == "L":  # the held lock is the truth, PID unknown; state.json lines
            assert lines[:2] == ["● Daemon is running (PID 0)", f"  Town: {gt_town}"]
            assert lines[2] == f"  Started: {state['started_at']}"
            assert lines[3].startswith("  Last heartbeat: ")
        else:
            assert lines[0] == "○ Daemon is not running"
        assert not (gt_town / "daemon" / "daemon.pid").exists()
    finally:
        code, out = keeper.stop(proc)
    assert code == 0, out
    assert json.loads(state_path.read_text())["running"] is False
    wait_gone(proc.pid)
