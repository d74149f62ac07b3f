"""sd_notify through ``sdnotify``, with the watchdog period from ``WATCHDOG_USEC``.

The notifier connects to ``NOTIFY_SOCKET`` once, then the variables are removed from our
environment so that no child (tmux client, bd, gt) can inherit them (design rule 2).
"""

from __future__ import annotations

import logging
import os
import time

try:
    from sdnotify import SystemdNotifier
except ImportError:  # pragma: no cover - the .deb depends on python3-sdnotify
    SystemdNotifier = None

log = logging.getLogger(__name__)

_NOTIFY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def watchdog_period(environ: dict[str, str] | None = None, pid: int | None = None
                    ) -> float | None:
    """Seconds between pings (half of ``WATCHDOG_USEC``), or None without a watchdog.

    ``WATCHDOG_PID``, when set, must be our PID (sd_watchdog_enabled(3)).
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not (usec.isascii() and usec.isdigit()) or len(usec) > 15 or int(usec) == 0:
        return None
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 2_000_000


class Notifier:
    """READY/STATUS/WATCHDOG/STOPPING messages; a no-op outside systemd."""

    def __init__(self) -> None:
        self.period = watchdog_period()
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET")) and SystemdNotifier is not None
        self._notifier = SystemdNotifier() if self.enabled else None
        for name in _NOTIFY_ENV:
            os.environ.pop(name, None)
        self._last_ping = time.monotonic()
        self.last_status = ""

    def send(self, message: str) -> None:
        """Send UTF-8 on sdnotify's socket: its ``notify()`` encodes Latin-1 and silently
        drops any message with another character (a STATUS= line with "…" or a rig name
        in another script would vanish)."""
        sock = getattr(self._notifier, "socket", None)
        if sock is None:
            return
        try:
            sock.sendall(message.encode("utf-8"))
        except OSError as exc:
            log.debug("sd_notify %r failed: %s", message.split("=", 1)[0], exc)

    def ready(self, status: str) -> None:
        self.status(status)
        self.send("READY=1")

    def status(self, text: str) -> None:
        line = " ".join(text.split())  # STATUS= is a single line
        self.last_status = line
        self.send(f"STATUS={line}")

    def stopping(self, status: str = "stopping") -> None:
        self.send(f"STOPPING=1\nSTATUS={status}")

    def ping(self, force: bool = False) -> None:
        """Keep the watchdog fed; call from the working loop, as often as you like."""
        if self.period is None:
            return
        now = time.monotonic()
        if force or now - self._last_ping >= self.period / 2:
            self.send("WATCHDOG=1")
            self._last_ping = now
