"""The tmux host's adopt mode: pure parts, and waiting for a process that is not our child."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator

import pytest

from gastown_units.runtime import tmux_host
from gastown_units.runtime.tmux_host import (
    AdoptedServerExited,
    adopt,
    adopted_message,
    parse_server_pid,
    probe_argv,
    server_argv,
    wait_for_exit,
)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "300"])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _later(seconds: float, action: object) -> threading.Timer:
    timer = threading.Timer(seconds, action)  # type: ignore[arg-type]
    timer.daemon = True
    timer.start()
    return timer


def test_the_probe_never_starts_a_server() -> None:
    for socket in (None, "gt"):
        argv = probe_argv("tmux", socket)
        assert argv[:2] == ["tmux", "-N"]
        assert not {"new-session", "new", "start-server", "start"} & set(argv)
    assert server_argv("tmux", None) == ["tmux", "-D"]


@pytest.mark.parametrize("text,pid", [("123\n", 123), ("  7 ", 7), ("", None), ("0", None),
                                      ("-1", None), ("abc", None), ("12 34", None)])
def test_parse_server_pid(text: str, pid: int | None) -> None:
    assert parse_server_pid(text) == pid


def test_the_adoption_line_names_pid_socket_and_cgroup() -> None:
    line = adopted_message(4242, "gt")
    assert "4242" in line and "'gt'" in line and "cgroup" in line
    assert "\n" not in line
    assert "default socket" in adopted_message(1, None)


def test_waiting_ends_when_the_process_exits(sleeper: subprocess.Popen[bytes]) -> None:
    _later(0.3, sleeper.kill)
    assert wait_for_exit(sleeper.pid, lambda: True) is True


def test_without_pidfd_the_pid_is_polled(sleeper: subprocess.Popen[bytes],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tmux_host, "_pidfd", lambda pid: None)
    monkeypatch.setattr(tmux_host, "_POLL_SECONDS", 0.05)

    def kill_and_reap() -> None:  # a zombie still answers kill(pid, 0)
        sleeper.kill()
        sleeper.wait()
    _later(0.3, kill_and_reap)
    assert wait_for_exit(sleeper.pid, lambda: True) is True


def test_sigterm_ends_the_wait_and_leaves_the_process(sleeper: subprocess.Popen[bytes]
                                                      ) -> None:
    before = signal.getsignal(signal.SIGTERM)
    _later(0.3, lambda: os.kill(os.getpid(), signal.SIGTERM))
    assert wait_for_exit(sleeper.pid, lambda: True) is False
    assert sleeper.poll() is None
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_reused_pid_is_not_waited_for(sleeper: subprocess.Popen[bytes]) -> None:
    assert wait_for_exit(sleeper.pid, lambda: False) is True


def test_adopt_announces_then_raises_when_the_server_exits(
        sleeper: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tmux_host, "running_server", lambda *args: sleeper.pid)
    said: list[str] = []
    _later(0.3, sleeper.kill)
    with pytest.raises(AdoptedServerExited, match=f"PID {sleeper.pid} .* has exited"):
        adopt(sleeper.pid, "tmux", "gt", 5.0, said.append)
    assert said == [adopted_message(sleeper.pid, "gt")]


def test_adopt_exits_0_on_sigterm(sleeper: subprocess.Popen[bytes],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tmux_host, "running_server", lambda *args: sleeper.pid)
    _later(0.3, lambda: os.kill(os.getpid(), signal.SIGTERM))
    assert adopt(sleeper.pid, "tmux", None, 5.0, lambda text: None) == 0
    assert sleeper.poll() is None
