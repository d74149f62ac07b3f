"""The stand-in ``gt daemon …``, ``gt down`` and ``gt up`` (tests/standins/_gt_daemon.py)
without a tmux server: the daemon and lock-file contract of each dialect.

Sessions (``gt down`` kill order, ``gt up`` starts) are tested on a private tmux server in
tests/tmux/test_gt_coexist.py.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.poll import poll_until, wait_gone

STANDINS = Path(__file__).resolve().parents[1] / "standins"
GT = STANDINS / "gt"
ISOLATE = ("GT_", "BD_", "BEADS_", "STANDIN_", "CLAUDE", "TMUX")


def _socket(town: Path) -> str:
    """The test's own socket (never the default server); ``gt up`` may start a server
    on it, which the ``town`` fixture ends."""
    return f"gtu-none-{hashlib.sha256(str(town).encode()).hexdigest()[:8]}"


def _env(town: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ISOLATE)}
    env["GT_STANDIN_TMUX_SOCKET"] = env["GT_TMUX_SOCKET"] = _socket(town)
    return env


@pytest.fixture(params=["J", "L"])
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def town(tmp_path: Path, dialect: str) -> Iterator[Path]:
    root = tmp_path / "town"
    (root / "mayor").mkdir(parents=True)
    (root / "mayor" / "town.json").write_text('{"type":"town","version":2,"name":"t"}\n')
    (root / "mayor" / "rigs.json").write_text(json.dumps({"version": 1, "rigs": {
        "gastown": {"beads": {"prefix": "gt"}}}}))
    (root / "daemon").mkdir()
    (root / ".standin").mkdir()
    (root / ".standin" / "gt.dialect").write_text(dialect)
    (root / ".standin" / "gt.daemon-wait").write_text("5")
    try:
        yield root
    finally:  # a server that gt up started for its sessions, and its socket file
        subprocess.run(["tmux", "-L", _socket(root), "kill-server"], capture_output=True,
                       timeout=10, check=False)
        tmpdir = os.environ.get("TMUX_TMPDIR") or "/tmp"
        (Path(tmpdir) / f"tmux-{os.getuid()}" / _socket(root)).unlink(missing_ok=True)


def gt(town: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GT), *args], cwd=town, env=_env(town),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def shared_holder(town: Path) -> Iterator[int]:
    """What every gastown-units service holds: a shared flock on daemon/daemon.lock."""
    fd = os.open(town / "daemon" / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    try:
        yield fd
    finally:
        os.close(fd)


def _daemon_run(town: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(GT), "daemon", "run"], cwd=town, env=_env(town),
                            text=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def _pid_file(town: Path) -> Path:
    return town / "daemon" / "daemon.pid"


def test_status_of_a_town_without_daemon_gastown_1_7(town: Path) -> None:
    result = gt(town, "daemon", "status")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == "○ Daemon is not running"


def test_daemon_run_holds_the_lock_and_writes_the_pid_file_gastown_1_7(
        town: Path, dialect: str) -> None:
    proc = _daemon_run(town)
    try:
        text = poll_until(lambda: _pid_file(town).exists() and _pid_file(town).read_text(),
                          timeout=10, what="daemon.pid")
        if dialect == "L":  # PID\n<16 hex>, no trailing newline (gastown-2026 §1.7)
            assert re.fullmatch(rf"{proc.pid}\n[0-9a-f]{{16}}", text)
        else:  # decimal PID ([J] §1.7)
            assert text.strip() == str(proc.pid)
        fd = os.open(town / "daemon" / "daemon.lock", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        status = gt(town, "daemon", "status").stdout.splitlines()
        assert status[0] == f"● Daemon is running (PID {proc.pid})"
        assert status[1] == f"  Town: {town}"
        assert any(line.startswith("  Started: ") for line in status)
        stopped = gt(town, "daemon", "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert proc.wait(timeout=10) == 0  # SIGTERM: a clean exit
        assert not _pid_file(town).exists()
        state = json.loads((town / "daemon" / "state.json").read_text())
        assert state["running"] is False and state["pid"] == proc.pid
    finally:
        _stop(proc)


def test_daemon_run_beside_a_shared_holder_fails_and_logs_gastown_2026_6_11(
        town: Path, shared_holder: int) -> None:
    proc = _daemon_run(town)
    assert proc.wait(timeout=20) == 1
    log = (town / "daemon" / "daemon.log").read_text()
    assert (f"Daemon startup failed (PID {proc.pid}): daemon already running "
            "(lock held by another process)") in log
    assert not _pid_file(town).exists()


def test_l_status_lock_held_without_pid_is_running_pid_0_gastown_2026_6_11(
        town: Path, dialect: str, shared_holder: int) -> None:
    (town / "daemon" / "state.json").write_text(json.dumps({
        "running": True, "pid": 4242, "started_at": "2026-12-02T04:00:00Z",
        "last_heartbeat": "2026-12-02T04:05:00Z", "heartbeat_count": 7}, indent=2))
    lines = gt(town, "daemon", "status").stdout.splitlines()
    if dialect == "L":
        assert lines == ["● Daemon is running (PID 0)", f"  Town: {town}",
                         "  Started: 2026-12-02T04:00:00Z",
                         "  Last heartbeat: 2026-12-02T04:05:00Z (#7)"]
    else:  # [J] trusts daemon.pid alone (gastown.md §1.7)
        assert lines[0] == "○ Daemon is not running"


@pytest.mark.parametrize("dialect", ["J"])  # [J] daemon.IsRunning; [L] trusts the lock
def test_j_pid_file_of_another_program_is_deleted_as_stale_gastown_1_7(
        town: Path, dialect: str) -> None:
    _pid_file(town).write_text(str(os.getpid()))  # pytest: no gt, daemon, run
    assert gt(town, "daemon", "status").stdout.startswith("○ Daemon is not running")
    assert not _pid_file(town).exists()


def test_l_down_unlinks_lock_held_without_pid_gastown_2026_6_11(
        town: Path, dialect: str, shared_holder: int) -> None:
    lock = town / "daemon" / "daemon.lock"
    result = gt(town, "down")
    assert result.returncode == 0, result.stderr
    if dialect == "L":
        assert not lock.exists() and not _pid_file(town).exists()
        assert "✓ Daemon stopped" in result.stdout
    else:  # [J]: no daemon.pid, no daemon to stop; the lock file stays
        assert lock.exists()
        assert "○ Daemon was not running" in result.stdout
    assert not (town / "daemon" / "shutting-down").exists()
    assert (town / "daemon" / "shutdown.lock").exists()  # never deleted


def test_l_daemon_stop_unlinks_lock_held_without_pid_gastown_2026_6_11(
        town: Path, dialect: str, shared_holder: int) -> None:
    result = gt(town, "daemon", "stop")
    if dialect == "L":
        assert result.returncode == 0
        assert not (town / "daemon" / "daemon.lock").exists()
    else:
        assert result.returncode == 1 and "daemon is not running" in result.stderr


HOLDER = """
import fcntl, os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("ready", flush=True)
time.sleep(600)
"""


def test_l_stop_sigterm_then_sigkill_after_500ms_gastown_2026_6_11(
        town: Path, dialect: str) -> None:
    """Lock held by X, daemon.pid = X: SIGTERM, 500 ms, SIGKILL (X ignores SIGTERM).
    [J] sees X's command line without gt/daemon/run and leaves X alone."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER,
                               str(town / "daemon" / "daemon.lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        _pid_file(town).write_text(f"{holder.pid}\n0123456789abcdef")
        result = gt(town, "daemon", "stop")
        if dialect == "L":
            assert result.returncode == 0, result.stderr
            assert holder.wait(timeout=10) == -signal.SIGKILL
            assert not _pid_file(town).exists()
        else:
            assert result.returncode == 1
            assert holder.poll() is None
    finally:
        _stop(holder)


def test_daemon_start_beside_us_fails_and_leaves_no_daemon_gastown_2026_6_11(
        town: Path, dialect: str, shared_holder: int) -> None:
    result = gt(town, "daemon", "start")
    assert result.returncode == 1
    if dialect == "L":  # the lock says running: nothing is started
        assert "daemon already running (PID 0)" in result.stderr
        assert not (town / "daemon" / "daemon.log").exists()
    else:  # [J] trusts the PID file: a `gt daemon run` is started and loses the lock
        assert "lock held by another process" in result.stderr
    assert not _pid_file(town).exists()


@pytest.mark.parametrize("dialect", ["L"])  # daemon/shutting-down is [L] only (§1.2)
def test_l_up_refuses_while_shutting_down_names_a_live_pid_gastown_2026_6_11(
        town: Path, dialect: str) -> None:
    marker = town / "daemon" / "shutting-down"
    marker.write_text(str(os.getpid()))
    result = gt(town, "up")
    assert result.returncode == 1 and "shutdown in progress" in result.stderr
    assert marker.exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    marker.write_text(str(dead.pid))
    result = gt(town, "up")  # stale: removed, then up goes on (daemon started)
    try:
        assert not marker.exists()
        assert "✓ Daemon: started" in result.stdout, result.stdout
    finally:
        text = _pid_file(town).read_text() if _pid_file(town).exists() else ""
        if text.split("\n")[0].isdigit():
            pid = int(text.split("\n")[0])
            os.kill(pid, signal.SIGTERM)
            wait_gone(pid)


def test_clear_backoff_gastown_2026_6_10(town: Path, dialect: str,
                                         shared_holder: int) -> None:
    path = town / "daemon" / "restart_state.json"
    path.write_text(json.dumps({"agents": {"deacon": {
        "last_restart": "2026-12-02T04:00:00Z", "restart_count": 6,
        "backoff_until": "2026-12-02T04:10:00Z", "crash_loop_since": "2026-12-02T04:01:00Z"}}}))
    path.chmod(0o600)  # as the daemon writes it (os.WriteFile keeps an existing mode)
    result = gt(town, "daemon", "clear-backoff", "deacon")
    if dialect == "J":
        assert result.returncode == 1 and "unknown command" in result.stderr
        return
    entry = json.loads(path.read_text())["agents"]["deacon"]
    assert entry == {"last_restart": "2026-12-02T04:00:00Z", "restart_count": 0,
                     "backoff_until": "0001-01-01T00:00:00Z",
                     "crash_loop_since": "0001-01-01T00:00:00Z"}
    assert path.stat().st_mode & 0o777 == 0o600
    assert result.returncode == 1 and "PID 0" in result.stderr  # signalling PID 0 fails
