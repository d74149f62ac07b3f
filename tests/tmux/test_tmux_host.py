"""``gastown-units tmux-server`` against real tmux servers on private sockets."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gastown_units.runtime.tmux_host import running_server
from tests.harness.keeper import service_env
from tests.harness.poll import poll_until
from tests.harness.tmux_server import PrivateTmux


def _server_pid(server: PrivateTmux) -> int:
    return int(server.tmux("display-message", "-p", "#{pid}").stdout)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[list[subprocess.Popen[str]], Path]]:
    """Starts ``tmux-server`` processes (stderr to a file); all are ended at teardown."""
    procs: list[subprocess.Popen[str]] = []
    yield procs, tmp_path / "host.log"
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _start(host: tuple[list[subprocess.Popen[str]], Path], socket: str
           ) -> subprocess.Popen[str]:
    procs, log = host
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "gastown_units", "tmux-server"],
                                stdout=err, stderr=subprocess.STDOUT, text=True,
                                env=service_env({"GT_TMUX_SOCKET": socket}))
    procs.append(proc)
    return proc


def test_the_probe_sees_no_server_and_starts_none() -> None:
    server = PrivateTmux()
    try:
        assert running_server("tmux", server.socket, 10) is None
        assert not (Path(f"/tmp/tmux-{os.getuid()}") / server.socket).exists()
        server.start()
        assert running_server("tmux", server.socket, 10) == _server_pid(server)
    finally:
        server.stop()


def test_a_running_server_is_adopted_until_it_exits(
        tmux_server: PrivateTmux, host: tuple[list[subprocess.Popen[str]], Path]) -> None:
    pid = _server_pid(tmux_server)
    proc = _start(host, tmux_server.socket)
    log = host[1]
    poll_until(lambda: f"adopted the tmux server PID {pid}" in log.read_text(), timeout=30,
               what="the adoption line")
    assert proc.poll() is None
    tmux_server.tmux("kill-server")
    assert proc.wait(timeout=30) == 1
    text = log.read_text()
    assert f"the adopted tmux server PID {pid}" in text and "has exited" in text
    assert "Traceback" not in text


def test_sigterm_leaves_the_adopted_server_running(
        tmux_server: PrivateTmux, host: tuple[list[subprocess.Popen[str]], Path]) -> None:
    pid = _server_pid(tmux_server)
    proc = _start(host, tmux_server.socket)
    poll_until(lambda: "adopted" in host[1].read_text(), timeout=30, what="the adoption")
    proc.terminate()
    assert proc.wait(timeout=30) == 0
    assert _server_pid(tmux_server) == pid
    assert "Traceback" not in host[1].read_text()


def test_without_a_server_it_becomes_the_server(
        host: tuple[list[subprocess.Popen[str]], Path]) -> None:
    server = PrivateTmux()
    try:
        proc = _start(host, server.socket)
        poll_until(lambda: running_server("tmux", server.socket, 10) == proc.pid,
                   timeout=30, what="tmux -D answering as the same process")
        assert "adopted" not in host[1].read_text()
    finally:
        server.stop()
