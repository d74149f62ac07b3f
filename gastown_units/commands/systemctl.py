"""``systemctl`` calls of the operator commands: argv lists, a timeout, one-line errors."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from gastown_units.errors import GastownError

SYSTEMCTL = "systemctl"
TIMEOUT = 120.0

#: ``systemctl is-enabled`` answers that mean "comes up with its target" (or is not
#: enableable at all, so there is nothing to do).
ENABLED_STATES = frozenset({"enabled", "enabled-runtime", "static", "alias", "indirect",
                            "generated", "transient"})
ACTIVE_STATES = frozenset({"active", "activating", "reloading"})


def query(*args: str, timeout: float = 30.0) -> str:
    """Output (first line) of a ``systemctl`` query whose exit status only says yes/no."""
    try:
        result = subprocess.run([SYSTEMCTL, *args], capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GastownError(f"systemctl {' '.join(args)}: {exc}") from None
    return (result.stdout.strip().splitlines() or [""])[0]


def is_enabled(unit: str) -> bool:
    return query("is-enabled", unit) in ENABLED_STATES


def is_active(unit: str) -> bool:
    return query("is-active", unit) in ACTIVE_STATES


def run(argv: Sequence[str], timeout: float = TIMEOUT) -> None:
    """Run ``systemctl ARGV``; GastownError with its stderr if it fails."""
    try:
        result = subprocess.run([SYSTEMCTL, *argv], capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GastownError(f"systemctl {' '.join(argv)}: {exc}") from None
    if result.returncode != 0:
        why = " ".join(result.stderr.split()) or f"exit {result.returncode}"
        raise GastownError(f"systemctl {' '.join(argv)} failed: {why}")


def query_lines(*args: str, timeout: float = 30.0) -> list[str]:
    """Every output line of a ``systemctl`` listing; GastownError if it fails."""
    try:
        result = subprocess.run([SYSTEMCTL, *args], capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GastownError(f"systemctl {' '.join(args)}: {exc}") from None
    if result.returncode != 0:
        why = " ".join(result.stderr.split()) or f"exit {result.returncode}"
        raise GastownError(f"systemctl {' '.join(args)} failed: {why}")
    return result.stdout.splitlines()
