"""Ports that run real processes and take real locks (no tmux needed)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from gastown_units.errors import LockConflict, ToolMissing, ToolTimeout
from gastown_units.ports import procs, runner
from gastown_units.ports.locks import TownLock, shutdown_in_progress
from tests.harness.poll import poll_until


def test_runner_returns_status_and_scrubs_notify_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "1000")
    result = runner.run([sys.executable, "-c",
                         "import os,sys; print(os.environ.get('NOTIFY_SOCKET','-'));"
                         "print(os.environ.get('WATCHDOG_USEC','-')); sys.exit(3)"],
                        timeout=10)
    assert result.returncode == 3 and result.stdout.split() == ["-", "-"]


def test_runner_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = (f"import subprocess,time; p=subprocess.Popen(['sleep','300']);"
              f"open({str(pidfile)!r},'w').write(str(p.pid)); time.sleep(300)")
    started = time.monotonic()
    with pytest.raises(ToolTimeout):
        runner.run([sys.executable, "-c", script], timeout=1.0)
    assert time.monotonic() - started < 30
    grandchild = int(poll_until(pidfile.read_text, timeout=5, what="child pid"))
    poll_until(lambda: not psutil.pid_exists(grandchild) or
               psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE,
               timeout=5, what="grandchild killed")


def test_runner_missing_binary() -> None:
    with pytest.raises(ToolMissing, match="not found"):
        runner.run(["/nonexistent/bd", "show"], timeout=5)


def test_kill_tree_terminates_deepest_first_then_kills(tmp_path: Path) -> None:
    # A parent that ignores SIGTERM, with a child: both must be gone afterwards.
    script = ("import signal,subprocess,time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
              "subprocess.Popen(['sleep','300']); time.sleep(300)")
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        poll_until(lambda: psutil.Process(proc.pid).children(), timeout=10, what="child")
        tree = [p.pid for p in procs.process_tree(proc.pid)]
        assert tree[-1] == proc.pid and len(tree) == 2
        assert procs.kill_tree(proc.pid, grace=0.5) == 2
        # psutil reaped our child; the TERM-ignoring parent is gone, so KILL followed TERM.
        proc.wait(timeout=10)
        assert not psutil.pid_exists(proc.pid)
        assert not psutil.pid_exists(tree[0]) or \
            psutil.Process(tree[0]).status() == psutil.STATUS_ZOMBIE
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert procs.kill_tree(proc.pid, grace=0.1) == 0  # gone: nothing to do


def _hold_lock(path: Path, mode: int) -> subprocess.Popen[str]:
    script = (f"import fcntl,os,sys,time; fd=os.open({str(path)!r},os.O_RDWR|os.O_CREAT);"
              f"fcntl.flock(fd,{mode}); print('locked',flush=True); time.sleep(300)")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_town_lock_refuses_beside_gt_daemon(tmp_path: Path) -> None:
    lock = tmp_path / "daemon" / "daemon.lock"
    lock.parent.mkdir()
    daemon = _hold_lock(lock, fcntl.LOCK_EX)
    try:
        with pytest.raises(LockConflict, match="gt daemon"):
            TownLock(lock).acquire()
    finally:
        daemon.kill()
        daemon.wait()


def test_town_lock_is_shared_and_keeps_gt_daemon_out(tmp_path: Path) -> None:
    lock = tmp_path / "daemon" / "daemon.lock"
    with TownLock(lock), TownLock(lock):  # two of our services side by side
        fd = os.open(lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what gt daemon does
        finally:
            os.close(fd)


def test_shutdown_lock_is_tested_by_flock_not_existence(tmp_path: Path) -> None:
    path = tmp_path / "shutdown.lock"
    assert not shutdown_in_progress(path)
    path.touch()
    assert not shutdown_in_progress(path)  # left behind by an old `gt down`
    holder = _hold_lock(path, fcntl.LOCK_EX)
    try:
        assert shutdown_in_progress(path)
    finally:
        holder.kill()
        holder.wait()
