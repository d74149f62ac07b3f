"""Run a gastown-units service as a real process against a test town and tmux server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.harness.town import AGENT, STANDINS

REPO = Path(__file__).resolve().parents[2]


def service_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TMUX", "TMUX_PANE", "NOTIFY_SOCKET", "WATCHDOG_USEC")
           and not k.startswith("GT_")}
    env["PYTHONPATH"] = str(REPO)
    env["GT_CONFIG"] = ""  # never the host's /etc/gastown/gastown.conf
    env.update(extra or {})
    return env


def service_argv(service: str, town: Path, socket: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "gastown_units", "run", service, "--town", str(town),
            "--tmux-socket", socket, "--agent-command", f"{sys.executable} {AGENT}",
            "--kill-grace", "1", "--bd-bin", str(STANDINS / "bd"),
            "--gt-bin", str(STANDINS / "gt"), *args]


def run_once(service: str, town: Path, socket: str, *args: str,
             env: dict[str, str] | None = None, timeout: float = 120
             ) -> subprocess.CompletedProcess[str]:
    """One pass (``--once``) of ``service``; returns the finished process."""
    return subprocess.run(service_argv(service, town, socket, "--once", *args),
                          capture_output=True, text=True, timeout=timeout,
                          env=service_env(env))


def start(service: str, town: Path, socket: str, *args: str,
          env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The long-running service; the caller must stop it (``stop``)."""
    return subprocess.Popen(service_argv(service, town, socket, *args), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=service_env(env))


def stop(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str]:
    """SIGTERM the service; return its exit code and output."""
    if proc.poll() is None:
        proc.terminate()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return proc.returncode, out
