"""The one way every external program is run: an argv list, a timeout, a scrubbed environment.

Nothing here builds a shell string. A timeout kills the program's whole process group, so a
hanging ``bd`` leaves nothing behind, and the caller gets :class:`ToolTimeout` ("unknown").
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gastown_units.errors import ToolError, ToolMissing, ToolTimeout

log = logging.getLogger(__name__)

# Never leak the service manager's sockets to children (design rule 2), nor a parent
# tmux client's identity (a tmux call from inside tmux would target the wrong server).
SCRUBBED_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "TMUX", "TMUX_PANE")


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: ours, minus the scrubbed names, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def error_line(self) -> str:
        """The first useful line of the failure, for logs."""
        text = (self.stderr or self.stdout).strip().splitlines()
        return text[0] if text else f"exit status {self.returncode}"


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
) -> Result:
    """Run ``argv`` and return its result; raise ToolMissing/ToolTimeout/ToolError.

    A non-zero exit is *not* raised: callers decide what an exit status means.
    """
    args = tuple(str(a) for a in argv)
    log.debug("run: %s", shlex.join(args))
    try:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=child_env(env),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise ToolMissing(f"{args[0]}: not found (is it installed and on PATH?)") from None
    except OSError as exc:
        raise ToolError(f"{args[0]}: cannot run: {exc.strerror}") from None
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise ToolTimeout(f"{shlex.join(args[:3])}…: no answer within {timeout:g}s") from None
    return Result(args, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
