"""The tmux host (``gastown-tmux.service``): own the tmux server, or adopt a running one.

On a workstation the town's owner often runs a tmux server on the socket already; ``tmux
-D`` would then exit 1 and the unit loop into its start limit, so no event hooks would ever
be set. Instead the host *adopts* that server: it stays active (the ``ExecStartPost=``
hooks get set on the adopted server), says so in its status, and waits for that server to
exit. It then exits non-zero, so that ``Restart=always`` starts it again and the next start
finds no server and runs ``tmux -D`` itself. An adopted server (and so every agent on it)
lives in the cgroup it was started from, not in this unit's.

Every probe passes ``-N``: asking whether a server runs must never start one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

from gastown_units.errors import EX_OK, GastownError, ToolError
from gastown_units.ports import runner

log = logging.getLogger(__name__)

# What the server's environment must not carry: it becomes every agent's environment.
SCRUBBED_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "TMUX", "TMUX_PANE",
                "INVOCATION_ID", "JOURNAL_STREAM", "MANAGERPID", "SYSTEMD_EXEC_PID")
_NO_SERVER = ("no server running", "error connecting to", "server exited unexpectedly")
_POLL_SECONDS = 1.0  # liveness poll of the adopted server where pidfd_open is missing


class AdoptedServerExited(GastownError):
    """The adopted server is gone: exit non-zero so that systemd restarts the unit."""


def socket_label(socket: str | None) -> str:
    """How logs name the socket.

    >>> socket_label(None), socket_label("gt")
    ('the default socket', "socket 'gt'")
    """
    return f"socket {socket!r}" if socket else "the default socket"


def server_argv(binary: str, socket: str | None) -> list[str]:
    """``tmux [-L SOCKET] -D``: the server in the foreground, as this unit's main process.

    >>> server_argv("/usr/bin/tmux", "gt")
    ['/usr/bin/tmux', '-L', 'gt', '-D']
    """
    return [binary, *(["-L", socket] if socket else []), "-D"]


def probe_argv(binary: str, socket: str | None) -> list[str]:
    """The question "which server answers here?"; ``-N`` so that it never starts one.

    >>> probe_argv("tmux", None)
    ['tmux', '-N', 'display-message', '-p', '#{pid}']
    """
    return [binary, "-N", *(["-L", socket] if socket else []), "display-message", "-p",
            "#{pid}"]


def parse_server_pid(stdout: str) -> int | None:
    """The server PID from the probe's output, or None if it is not one.

    >>> parse_server_pid("4242\\n"), parse_server_pid(""), parse_server_pid("0")
    (4242, None, None)
    """
    text = stdout.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        return None
    return int(text) if int(text) > 0 else None


def adopted_message(pid: int, socket: str | None) -> str:
    """The one line the journal and ``systemctl status`` show in adopt mode."""
    return (f"adopted the tmux server PID {pid} already running on {socket_label(socket)} "
            "(started outside this unit: its sessions are not in this unit's cgroup)")


def running_server(binary: str, socket: str | None, timeout: float) -> int | None:
    """PID of the server that answers on the socket, or None when none runs.

    A server that answers but whose reply makes no sense, or a probe that hangs, is not
    "no server": starting a second server on that socket would fail anyway.
    """
    result = runner.run(probe_argv(binary, socket), timeout=timeout)
    if result.ok:
        pid = parse_server_pid(result.stdout)
        if pid is None:
            raise ToolError(f"tmux on {socket_label(socket)} answered {result.stdout!r}, "
                            "not a server PID")
        return pid
    text = (result.stderr + result.stdout).lower()
    if any(needle in text for needle in _NO_SERVER):
        return None
    raise ToolError(f"cannot tell whether a tmux server runs on {socket_label(socket)}: "
                    f"{result.error_line()}")


@dataclass
class _StopFlag:
    """SIGTERM/SIGINT set the flag and wake the wait through a pipe."""

    read_fd: int
    write_fd: int
    stop: bool = False

    def on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.stop = True
        with contextlib.suppress(BlockingIOError):
            os.write(self.write_fd, b"x")


@contextlib.contextmanager
def _stop_signals() -> Iterator[_StopFlag]:
    read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    flag = _StopFlag(read_fd, write_fd)
    old = {sig: signal.signal(sig, flag.on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        os.close(read_fd)
        os.close(write_fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _pidfd(pid: int) -> int | None:
    """A pidfd (readable once ``pid`` exits), or None where the kernel or Python lacks it."""
    opener: Callable[[int], int] | None = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return opener(pid)
    except ProcessLookupError:
        raise
    except OSError:  # ENOSYS on old kernels, EPERM in odd sandboxes
        return None


def wait_for_exit(pid: int, is_current: Callable[[], bool]) -> bool:
    """Wait until process ``pid`` exits (True) or SIGTERM/SIGINT arrives (False).

    ``pid`` is not our child: a pidfd tells when it exits, else ``kill(pid, 0)`` is polled.
    ``is_current`` is asked once the pidfd is open, so that a PID that ended and was reused
    between the probe and ``pidfd_open`` is not waited for.
    """
    with _stop_signals() as flag:
        try:
            pidfd = _pidfd(pid)
        except ProcessLookupError:
            return True
        try:
            if not is_current():
                return True
            fds = [flag.read_fd] + ([pidfd] if pidfd is not None else [])
            timeout = None if pidfd is not None else _POLL_SECONDS
            while not flag.stop:
                ready, _, _ = select.select(fds, [], [], timeout)
                if flag.stop:
                    break
                if pidfd is not None and pidfd in ready:
                    return True
                if pidfd is None and not _alive(pid):
                    return True
            return False
        finally:
            if pidfd is not None:
                os.close(pidfd)


def adopt(pid: int, binary: str, socket: str | None, timeout: float,
          notify: Callable[[str], None]) -> int:
    """Adopt server ``pid``: announce it, wait for its exit; the exit code on SIGTERM.

    Raises :class:`AdoptedServerExited` when the server exits, so that the unit restarts
    and owns a fresh server.
    """
    message = adopted_message(pid, socket)
    log.warning("%s", message)
    notify(message)

    def still_that_server() -> bool:
        try:
            return running_server(binary, socket, timeout) == pid
        except ToolError:
            return True  # it answers, just not clearly: keep watching the PID we know

    if wait_for_exit(pid, still_that_server):
        raise AdoptedServerExited(
            f"the adopted tmux server PID {pid} on {socket_label(socket)} has exited; "
            "exiting so that the unit restarts and runs its own server")
    log.info("stopping on request; the adopted tmux server PID %d is left running", pid)
    return EX_OK
