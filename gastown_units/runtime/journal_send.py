"""Log records to journald over its native socket, with structured fields.

The fields are those python-systemd's ``JournalHandler`` sends (MESSAGE, PRIORITY, LOGGER,
THREAD_NAME, PROCESS_NAME, CODE_FILE/LINE/FUNC, SYSLOG_IDENTIFIER, the handler's constant
fields, and every ``extra=`` whose name journald accepts). Our own sender, because
importing ``systemd.journal`` (uuid, platform, its C module) cost about 5 ms of every
polecat sweep's start, and that start is on the path from an agent's death to its restart.

The protocol (systemd's ``sd_journal_sendv``, journald's native socket): one datagram of
``NAME=value`` lines; a value holding a newline is ``NAME``, newline, its length as a
64-bit little-endian integer, the value, newline. A datagram too large for the socket is
sent as a sealed memfd instead.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import logging
import os
import re
import socket
import struct
from collections.abc import Mapping

JOURNAL_SOCKET = "/run/systemd/journal/socket"

_FIELD_RE = re.compile(r"[A-Z0-9][A-Z0-9_]{0,63}")
_PRIORITIES = ((logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4),
               (logging.ERROR, 3), (logging.CRITICAL, 2))


def priority(levelno: int) -> int:
    """The syslog priority of a logging level (python-systemd's mapping).

    >>> priority(logging.INFO), priority(logging.WARNING), priority(logging.ERROR)
    (6, 4, 3)
    >>> priority(25), priority(60)
    (4, 1)
    """
    return next((pri for level, pri in _PRIORITIES if levelno <= level), 1)


def valid_field(name: str) -> bool:
    """Whether journald keeps a field of this name (upper case, digits, ``_``; no
    leading ``_``, which only journald itself may set; at most 64 characters).

    >>> valid_field("GT_AGENT"), valid_field("msg"), valid_field("_PID")
    (True, False, False)
    """
    return _FIELD_RE.fullmatch(name) is not None


def encode(fields: Mapping[str, object]) -> bytes:
    r"""One native-protocol datagram of ``fields`` (values as text; None left out).

    >>> encode({"MESSAGE": "a\nb", "PRIORITY": 6})
    b'MESSAGE\n\x03\x00\x00\x00\x00\x00\x00\x00a\nb\nPRIORITY=6\n'
    """
    out = bytearray()
    for name, value in fields.items():
        if value is None:
            continue
        data = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
        key = name.encode("ascii")
        if b"\n" in data:
            out += key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key + b"=" + data + b"\n"
    return bytes(out)


class JournalSender(logging.Handler):
    """A logging handler that writes each record as one journal entry."""

    def __init__(self, fields: Mapping[str, str], address: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.fields = dict(fields)
        self.address = address
        self._sock: socket.socket | None = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            with contextlib.suppress(OSError):  # else the default; a large entry: memfd
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 1024 * 1024)
            self._sock = sock
        return self._sock

    def entry(self, record: logging.LogRecord) -> dict[str, object]:
        """The journal fields of ``record``."""
        fields: dict[str, object] = {
            "MESSAGE": self.format(record), "PRIORITY": priority(record.levelno),
            "LOGGER": record.name, "THREAD_NAME": record.threadName,
            "PROCESS_NAME": record.processName, "CODE_FILE": record.pathname,
            "CODE_LINE": record.lineno, "CODE_FUNC": record.funcName, **self.fields}
        if record.exc_text:
            fields["EXCEPTION_TEXT"] = record.exc_text
        if record.args:
            fields["CODE_ARGS"] = str(record.args)
        for name, value in record.__dict__.items():
            if valid_field(name):
                fields[name] = getattr(value, "hex", value) if name == "MESSAGE_ID" \
                    else value
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.send(encode(self.entry(record)))
        except Exception:  # noqa: BLE001 - a log line must never end the service
            self.handleError(record)

    def send(self, datagram: bytes) -> None:
        sock = self._socket()
        try:
            sock.sendto(datagram, self.address)
        except OSError as exc:
            if exc.errno not in (90, 105):  # EMSGSIZE, ENOBUFS: too large for a datagram
                raise
            self._send_memfd(sock, datagram)

    def _send_memfd(self, sock: socket.socket, datagram: bytes) -> None:
        fd = os.memfd_create("journal-entry", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.write(fd, datagram)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                        | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
            sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                               array.array("i", [fd]))], 0, self.address)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        super().close()



def send_entry(fields: Mapping[str, object], address: str = JOURNAL_SOCKET) -> None:
    """One journal entry of ``fields`` (MESSAGE among them) from a process that does not
    log through a :class:`JournalSender` (an operator's command); OSError if refused."""
    sender = JournalSender({}, address)
    try:
        sender.send(encode(fields))
    finally:
        sender.close()
