"""The one way every external program is run: an argv list, a timeout, a scrubbed environment.

Nothing here builds a shell string. A timeout kills the program's whole process group, so a
hanging ``bd`` leaves nothing behind, and the caller gets :class:`ToolTimeout` ("unknown").

Every argv element from data goes through :mod:`gastown_units.ports.argv` or after ``--``
(in the port that builds it); here every element, environment value and the working
directory is refused with BadInput if it holds a NUL or a lone surrogate, and a tool's
output is decoded as UTF-8 with replacement characters, never strictly (a tool that
prints a stray byte must not crash a pass with UnicodeDecodeError).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from gastown_units.errors import BadInput, ToolError, ToolMissing, ToolTimeout
from gastown_units.ports.argv import checked_argv, text_arg

log = logging.getLogger(__name__)

# Never leak the service manager's sockets to children (design rule 2), nor a parent
# tmux client's identity (a tmux call from inside tmux would target the wrong server).
SCRUBBED_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "TMUX", "TMUX_PANE")


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: ours, minus the scrubbed names, plus ``extra``
    (whose names and values must survive ``execve``: BadInput otherwise)."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    for key, value in (extra or {}).items():
        text_arg(key, "environment name")
        if not key or "=" in key:
            raise BadInput(f"bad environment name {key!r}")
        env[key] = text_arg(value, f"environment value {key}")
    return env


def _prepare(argv: Sequence[str], cwd: Path | None,
             env: Mapping[str, str] | None) -> tuple[tuple[str, ...], dict[str, str]]:
    """The checked argv and environment of one run; BadInput before anything starts."""
    args = checked_argv(argv)
    if not args:
        raise ToolError("refusing to run an empty command")
    if cwd is not None:
        text_arg(str(cwd), f"working directory of {args[0]}")
    return args, child_env(env)


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
        text = [line for line in (self.stderr or self.stdout).strip().splitlines()
                if line.strip()]
        if text and text[0].startswith("Traceback (most recent call last)"):
            return f"crashed: {text[-1].strip()}"  # the exception, not the header
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
    args, environment = _prepare(argv, cwd, env)
    log.debug("run: %s", shlex.join(args))
    try:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=environment,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="replace",
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


class Background:
    """A program left running while the caller goes on (a ``gt sling`` that waits for a
    polecat's runtime for longer than a watchdog period). Its output goes to unnamed
    temporary files, so a chatty child never blocks on a full pipe."""

    def __init__(self, argv: Sequence[str], *, timeout: float, cwd: Path | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.argv, environment = _prepare(argv, cwd, env)
        self.timeout = timeout
        self._out = tempfile.TemporaryFile(  # noqa: SIM115 - outlives this call
            mode="w+", encoding="utf-8", errors="replace")
        self._err = tempfile.TemporaryFile(  # noqa: SIM115 - outlives this call
            mode="w+", encoding="utf-8", errors="replace")
        log.debug("start: %s", shlex.join(self.argv))
        try:
            self._proc = subprocess.Popen(self.argv, cwd=cwd, env=environment,
                                          stdin=subprocess.DEVNULL, stdout=self._out,
                                          stderr=self._err, start_new_session=True)
        except FileNotFoundError:
            self._close()
            raise ToolMissing(f"{self.argv[0]}: not found (is it installed and on PATH?)"
                              ) from None
        except OSError as exc:
            self._close()
            raise ToolError(f"{self.argv[0]}: cannot run: {exc.strerror}") from None
        self.started = time.monotonic()

    @property
    def age(self) -> float:
        return time.monotonic() - self.started

    @property
    def finished(self) -> bool:
        """Ended, or out of time (the next :meth:`poll` then kills it)."""
        return self._proc.poll() is not None or self.age >= self.timeout

    def poll(self) -> Result | None:
        """The result once the program has ended, else None; ToolTimeout (after killing its
        process group) once it has run longer than its timeout."""
        code = self._proc.poll()
        if code is None:
            if self.age < self.timeout:
                return None
            self.kill()
            raise ToolTimeout(f"{shlex.join(self.argv[:3])}…: no answer within "
                              f"{self.timeout:g}s")
        return Result(self.argv, code, self._read(self._out), self._read(self._err))

    def kill(self) -> None:
        """End the program and everything it started (its own process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)
        self._close()

    def _read(self, handle: IO[str]) -> str:
        try:
            handle.seek(0)
            return handle.read()
        except (OSError, ValueError):
            return ""
        finally:
            with contextlib.suppress(OSError):
                handle.close()

    def _close(self) -> None:
        for handle in (self._out, self._err):
            with contextlib.suppress(OSError):
                handle.close()
