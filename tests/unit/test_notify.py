"""sd_notify messages reach a real notification socket, as UTF-8, and the env is scrubbed."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from gastown_units.runtime.notify import Notifier


def test_status_with_any_character_reaches_the_socket(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        monkeypatch.setenv("WATCHDOG_USEC", "4000000")
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        notifier = Notifier()
        assert notifier.period == 2.0
        assert "NOTIFY_SOCKET" not in os.environ and "WATCHDOG_USEC" not in os.environ
        notifier.ready("bd show gt-rig-x…: no answer within 3s 🐺\nsecond line")
        assert server.recv(4096).decode() == \
            "STATUS=bd show gt-rig-x…: no answer within 3s 🐺 second line"
        assert server.recv(4096) == b"READY=1"
        notifier.ping(force=True)
        assert server.recv(4096) == b"WATCHDOG=1"
        notifier.stopping("bye ❯")
        assert server.recv(4096).decode() == "STOPPING=1\nSTATUS=bye ❯"
    finally:
        server.close()


def test_no_socket_means_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    notifier.ready("fine")
    notifier.ping(force=True)
    assert notifier.last_status == "fine"
