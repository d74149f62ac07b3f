"""A split town: the town's agents run on another tmux server than the configured one.

Two private tmux servers share a private socket directory (``TMUX_TMPDIR``), so the
services' scan of the user's tmux sockets sees exactly these two: ``ours`` (the one the
services are configured for) and ``theirs`` (the one ``gt`` would use). Nothing here
touches the user's real tmux servers.
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import keeper
from tests.harness.poll import poll_until, wait_gone
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import AGENT, agent_record
from tests.tmux.test_polecat_health import RIG, mails, polecat

DEGRADED = ("--degraded", "true")
DEACON = "hq-deacon"
WITNESS = f"gt-{RIG}-witness"


class Notify:
    """A stand-in for systemd's notification socket: collects the STATUS= lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.statuses: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                data = self.sock.recv(65536).decode("utf-8")
            except BlockingIOError:
                return self.statuses
            self.statuses += [line[len("STATUS="):] for line in data.splitlines()
                              if line.startswith("STATUS=")]

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A private TMUX_TMPDIR (short: socket paths are limited to ~100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="gtu-split-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def ours(socket_dir: Path) -> Iterator[PrivateTmux]:
    server = PrivateTmux(socket_dir, "ours")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def theirs(socket_dir: Path) -> Iterator[PrivateTmux]:
    server = PrivateTmux(socket_dir, "theirs")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def notify(socket_dir: Path) -> Iterator[Notify]:
    sink = Notify(socket_dir / "notify")
    try:
        yield sink
    finally:
        sink.close()


def by_hand(server: PrivateTmux, session: str, cwd: Path) -> int:
    """Start the stand-in agent in ``session`` as ``gt`` would; returns its pane PID."""
    cwd.mkdir(parents=True, exist_ok=True)
    server.tmux("new-session", "-d", "-s", session, "-c", str(cwd),
                f"exec {sys.executable} {AGENT}")
    return poll_until(lambda: (p := server.pane(session)) and p[1] == "claude" and p[0],
                      timeout=30, what=f"{session} running")


def end(server: PrivateTmux, session: str, pid: int) -> None:
    server.tmux("kill-session", "-t", f"={session}")
    wait_gone(pid, timeout=30)


def starts(workdir: Path) -> int:
    path = workdir / ".agent" / "starts.log"
    return len(path.read_text().splitlines()) if path.exists() else 0


def env_for(socket_dir: Path, notify: Notify | None = None) -> dict[str, str]:
    env = {"TMUX_TMPDIR": str(socket_dir)}
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify.path)
    return env


def split_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "split town:" in line]


def test_deacon_on_another_server_is_not_started_twice(
        town: Path, ours: PrivateTmux, theirs: PrivateTmux, notify: Notify,
        socket_dir: Path) -> None:
    pid = by_hand(theirs, DEACON, town / "deacon")
    result = keeper.run_once("deacon-keeper", town, ours.socket, *DEGRADED,
                             env=env_for(socket_dir, notify))
    assert result.returncode == 0, result.stderr
    assert DEACON not in ours.sessions(), "a second Deacon was started in the same worktree"
    assert starts(town / "deacon") == 1
    assert theirs.pane(DEACON) == (pid, "claude")  # theirs untouched
    expected = (f"split town: {DEACON} already runs on tmux server {theirs.path}, not on "
                f"the configured socket 'ours' (GT_TMUX_SOCKET)")
    lines = split_lines(result.stderr)
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "GT_TMUX_SOCKET=theirs" in lines[0]
    assert notify.drain()[-1].startswith(expected), notify.statuses

    end(theirs, DEACON, pid)  # the condition goes away: the keeper takes over
    result = keeper.run_once("deacon-keeper", town, ours.socket, *DEGRADED,
                             env=env_for(socket_dir, notify))
    assert result.returncode == 0, result.stderr
    assert DEACON in ours.sessions() and starts(town / "deacon") == 2
    assert "split town" not in notify.drain()[-1]


def test_long_running_keeper_says_it_once_and_clears_it(
        town: Path, ours: PrivateTmux, theirs: PrivateTmux, notify: Notify,
        socket_dir: Path) -> None:
    pid = by_hand(theirs, DEACON, town / "deacon")
    proc = keeper.start("deacon-keeper", town, ours.socket, *DEGRADED, "--interval", "0.3",
                        env=env_for(socket_dir, notify))
    try:
        poll_until(lambda: sum("split town:" in s for s in notify.drain()) >= 4, timeout=60,
                   what="four passes that saw the split town")
        assert DEACON not in ours.sessions()
        end(theirs, DEACON, pid)
        poll_until(lambda: ours.pane(DEACON), timeout=90, what="the Deacon started on ours")
        poll_until(lambda: "split town" not in notify.drain()[-1], timeout=30,
                   what="a status line without the split town")
    finally:
        code, out = keeper.stop(proc)
    assert code == 0, out
    assert len(split_lines(out)) == 1, out  # one journal line for the whole incident
    assert f"split town over for {DEACON}" in out
    assert starts(town / "deacon") == 2


def test_witness_on_another_server_is_not_started_twice(
        town: Path, ours: PrivateTmux, theirs: PrivateTmux, notify: Notify,
        socket_dir: Path) -> None:
    pid = by_hand(theirs, WITNESS, town / RIG / "witness")
    result = keeper.run_once("witness", town, ours.socket, "--rig", RIG,
                             env=env_for(socket_dir, notify))
    assert result.returncode == 0, result.stderr
    assert WITNESS not in ours.sessions()
    assert theirs.pane(WITNESS) == (pid, "claude")
    assert len(split_lines(result.stderr)) == 1, result.stderr
    assert notify.drain()[-1].startswith(
        f"split town: {WITNESS} already runs on tmux server {theirs.path}")


def test_polecat_on_another_server_is_not_a_crash(
        town: Path, ours: PrivateTmux, theirs: PrivateTmux, notify: Notify,
        socket_dir: Path) -> None:
    tree = polecat(town, theirs, "nux")  # hooked work, running on their server
    first = agent_record(tree)["pid"]
    for _ in range(2):  # the second sweep says nothing new
        result = keeper.run_once("polecat-health", town, ours.socket, "--restart-backoff",
                                 "0", env=env_for(socket_dir, notify))
        assert result.returncode == 0, result.stderr
        assert f"gt-{RIG}-nux" not in ours.sessions()
        assert notify.drain()[-1].startswith(f"split town: gt-{RIG}-nux already runs")
    assert agent_record(tree)["pid"] == first and starts(tree) == 1
    assert "CRASH" not in result.stderr and split_lines(result.stderr) == []
    assert not any(s.startswith(("CRASHED_POLECAT", "ORPHANED_WORK"))
                   for s in mails(town, f"{RIG}/witness"))


def test_same_name_of_another_town_is_no_split(
        town: Path, ours: PrivateTmux, theirs: PrivateTmux, socket_dir: Path,
        tmp_path: Path) -> None:
    by_hand(theirs, DEACON, tmp_path / "other-town" / "deacon")
    result = keeper.run_once("deacon-keeper", town, ours.socket, *DEGRADED,
                             env=env_for(socket_dir))
    assert result.returncode == 0, result.stderr
    assert DEACON in ours.sessions() and "split town" not in result.stderr


def test_stale_socket_is_no_server_and_is_never_started(
        town: Path, ours: PrivateTmux, socket_dir: Path) -> None:
    stale = ours.path.parent / "stale"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))
    sock.close()  # a socket file with no server behind it
    result = keeper.run_once("deacon-keeper", town, ours.socket, *DEGRADED,
                             env=env_for(socket_dir))
    assert result.returncode == 0, result.stderr
    assert DEACON in ours.sessions() and "split town" not in result.stderr
    probe = PrivateTmux(socket_dir, "stale")
    assert probe.tmux("list-sessions", check=False).returncode != 0  # still no server
    assert not (ours.path.parent / "default").exists()  # asked, never started
