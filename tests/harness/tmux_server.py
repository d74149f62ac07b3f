"""A private tmux server for one test: unique ``-L`` socket, killed at teardown."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path


class PrivateTmux:
    """Owns a tmux server on a unique socket; never touches the default server.

    ``tmpdir`` puts the socket in ``<tmpdir>/tmux-<uid>/`` (tmux's ``TMUX_TMPDIR``) instead
    of the inherited one, so that a test can own a whole socket directory.
    """

    def __init__(self, tmpdir: Path | None = None, socket: str | None = None) -> None:
        self.socket = socket or f"gtu-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.tmpdir = tmpdir
        self.started = False

    @property
    def path(self) -> Path:
        """The server's socket file."""
        base = self.tmpdir or os.environ.get("TMUX_TMPDIR") or "/tmp"
        return Path(base) / f"tmux-{os.getuid()}" / self.socket

    def env(self) -> dict[str, str]:
        """The environment of our tmux calls (and of a service that must find our socket)."""
        env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
        if self.tmpdir is not None:
            env["TMUX_TMPDIR"] = str(self.tmpdir)
        return env

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=10, check=check, env=self.env())

    def start(self) -> PrivateTmux:
        """Start the server the way gastown-tmux.service does: no sessions, stays up."""
        self.tmux("-f", "/dev/null", "start-server", ";", "set", "-g", "exit-empty", "off")
        self.started = True
        return self

    def sessions(self) -> set[str]:
        result = self.tmux("list-sessions", "-F", "#{session_name}", check=False)
        return set(result.stdout.split()) if result.returncode == 0 else set()

    def pane(self, session: str) -> tuple[int, str] | None:
        """(pane PID, current command) of the session's first pane, or None."""
        result = self.tmux("list-panes", "-t", f"={session}", "-F",
                           "#{pane_pid}\t#{pane_current_command}", check=False)
        if result.returncode != 0 or not result.stdout.strip():
            return None
        pid, _, command = result.stdout.splitlines()[0].partition("\t")
        return int(pid), command

    def stop(self) -> None:
        self.tmux("kill-server", check=False)
        self.path.unlink(missing_ok=True)
