"""A private tmux server for one test: unique ``-L`` socket, killed at teardown."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path


class PrivateTmux:
    """Owns a tmux server on a unique socket; never touches the default server."""

    def __init__(self) -> None:
        self.socket = f"gtu-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.started = False

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=10, check=check, env=env)

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
        path = Path(f"/tmp/tmux-{os.getuid()}") / self.socket
        path.unlink(missing_ok=True)
