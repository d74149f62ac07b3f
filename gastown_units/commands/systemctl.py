"""``systemctl`` calls of the operator commands: argv lists, a timeout, one-line errors."""

from __future__ import annotations

from collections.abc import Sequence

from gastown_units.errors import GastownError
from gastown_units.ports import runner

SYSTEMCTL = "systemctl"
TIMEOUT = 120.0

#: ``systemctl is-enabled`` answers that mean "comes up with its target" (or is not
#: enableable at all, so there is nothing to do).
ENABLED_STATES = frozenset({"enabled", "enabled-runtime", "static", "alias", "indirect",
                            "generated", "transient"})
ACTIVE_STATES = frozenset({"active", "activating", "reloading"})


def _systemctl(args: Sequence[str], timeout: float) -> runner.Result:
    """``systemctl ARGS`` through the one runner (argv checked, timeout, no shell)."""
    try:
        return runner.run([SYSTEMCTL, *args], timeout=timeout)
    except GastownError as exc:
        raise GastownError(f"systemctl {' '.join(args)}: {exc}") from None


def _checked(args: Sequence[str], timeout: float) -> runner.Result:
    result = _systemctl(args, timeout)
    if result.returncode != 0:
        why = " ".join(result.stderr.split()) or f"exit {result.returncode}"
        raise GastownError(f"systemctl {' '.join(args)} failed: {why}")
    return result


def query(*args: str, timeout: float = 30.0) -> str:
    """Output (first line) of a ``systemctl`` query whose exit status only says yes/no."""
    return (_systemctl(args, timeout).stdout.strip().splitlines() or [""])[0]


def is_enabled(unit: str) -> bool:
    return query("is-enabled", unit) in ENABLED_STATES


def is_active(unit: str) -> bool:
    return query("is-active", unit) in ACTIVE_STATES


def run(argv: Sequence[str], timeout: float = TIMEOUT) -> None:
    """Run ``systemctl ARGV``; GastownError with its stderr if it fails."""
    _checked(argv, timeout)


def query_lines(*args: str, timeout: float = 30.0) -> list[str]:
    """Every output line of a ``systemctl`` listing; GastownError if it fails."""
    return _checked(args, timeout).stdout.splitlines()
