"""Our journald sender (runtime/journal_send.py) speaks journald's native protocol: what it
writes to a datagram socket is read back here field by field, as journald would parse it."""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gastown_units.runtime.journal_send import JournalSender, encode, send_entry

REPO = Path(__file__).resolve().parents[2]


def parse(data: bytes) -> dict[str, str]:
    """journald's reading of one native datagram (later fields of a name win here)."""
    fields: dict[str, str] = {}
    while data:
        line, sep, rest = data.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            data = rest
            continue
        assert sep, "a field without = needs a length"
        (size,) = struct.unpack("<Q", rest[:8])
        fields[line.decode()] = rest[8:8 + size].decode()
        assert rest[8 + size:9 + size] == b"\n"
        data = rest[9 + size:]
    return fields


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def receive(sock: socket.socket) -> dict[str, str]:
    return parse(sock.recv(1 << 20))


def test_records_carry_the_fields_journalctl_is_asked_for(
        journal: tuple[socket.socket, str]) -> None:
    sock, path = journal
    handler = JournalSender({"SYSLOG_IDENTIFIER": "gastown-witness@r", "GT_ROLE": "witness"},
                            path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("test.journal_send")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        log.warning("restarted %s\nsecond line", "gt-r-nux",
                    extra={"GT_AGENT": "r/nux", "MESSAGE_ID": "0123abcd", "lower": "x",
                           "_PID": "1"})
        got = receive(sock)
        assert got["MESSAGE"] == "restarted gt-r-nux\nsecond line"
        assert (got["PRIORITY"], got["SYSLOG_IDENTIFIER"], got["GT_ROLE"]) == \
            ("4", "gastown-witness@r", "witness")
        assert (got["GT_AGENT"], got["MESSAGE_ID"], got["LOGGER"]) == \
            ("r/nux", "0123abcd", "test.journal_send")
        assert got["CODE_FUNC"] == "test_records_carry_the_fields_journalctl_is_asked_for"
        assert "lower" not in got and "_PID" not in got  # names journald would refuse
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
        got = receive(sock)
        assert got["PRIORITY"] == "3"
        assert got["MESSAGE"].startswith("failed\nTraceback")
        assert "ValueError: boom" in got["EXCEPTION_TEXT"]
        log.info("%d%%", 5)
        assert receive(sock)["MESSAGE"] == "5%"
    finally:
        log.removeHandler(handler)
        handler.close()


def test_an_entry_too_large_for_a_datagram_goes_by_memfd(
        journal: tuple[socket.socket, str]) -> None:
    sock, path = journal
    sender = JournalSender({"GT_ROLE": "polecat"}, path)
    try:  # a socket whose buffer (wmem_max caps ours) is smaller than the entry
        sender._socket().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = "x" * (256 * 1024)
        sender.send(encode({"MESSAGE": big, **sender.fields}))
        data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 1)
        assert fds and not data  # the memfd, not a datagram
        with os.fdopen(fds[0], "rb") as memfd:
            got = parse(memfd.read() or os.pread(fds[0], 1 << 20, 0))
        assert got["MESSAGE"] == big and got["GT_ROLE"] == "polecat"
    finally:
        sender.close()


def test_a_missing_journal_socket_is_an_oserror_not_a_hang(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        send_entry({"MESSAGE": "x"}, str(tmp_path / "none"))


def test_binary_values_and_none() -> None:
    assert parse(encode({"A": b"\x00\x01", "B": None, "C": 3})) == {"A": "\x00\x01", "C": "3"}


def test_the_sweeps_start_loads_neither_click_nor_python_systemd(tmp_path: Path) -> None:
    """The polecat sweep's command line (its unit's ExecStart=) stays lean: these imports
    cost its every start, on the way from a death to the restart (issue 12)."""
    code = ("import sys\nfrom gastown_units.launch import main\n"
            "rc = main(['run', 'polecat-health', '--once'])\n"
            "heavy = [m for m in ('click', 'systemd.journal', 'uuid', 'hashlib', 'ctypes',"
            " 'concurrent.futures', 'gastown_units.cli') if m in sys.modules]\n"
            "print(rc, heavy)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "GT_CONFIG": "",
           "GT_TOWN_ROOT": str(tmp_path / "no-town")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.split("\n")[0] == "78 []", out


