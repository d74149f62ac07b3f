"""The ``gt`` CLI: one runner for its commands (mail, sling), run from the town root.

Every argv element from data goes through :mod:`gastown_units.ports.argv` or after ``--``:
the subcommand ports (:mod:`.mail`, :mod:`.sling`) check theirs before calling
:meth:`GtCommand.run`; the runner refuses NUL and lone surrogates in any element.
"""

from __future__ import annotations

from pathlib import Path

from gastown_units.errors import ToolError
from gastown_units.ports import runner


class GtCommand:
    """Runs ``gt`` subcommands; ``env`` sets the sender identity (``GT_ROLE`` …, §5.3)."""

    def __init__(self, *, binary: str, cwd: Path, timeout: float,
                 env: dict[str, str] | None = None) -> None:
        self.binary = binary
        self.cwd = cwd
        self.timeout = timeout
        self.env = env or {}

    def run(self, *args: str) -> runner.Result:
        """Run ``gt ARGS``; a non-zero exit is a ToolError naming the subcommand."""
        result = runner.run([self.binary, *args], timeout=self.timeout, cwd=self.cwd,
                            env=self.env)
        if not result.ok:
            raise ToolError(f"gt {' '.join(args[:2])} failed: {result.error_line()}")
        return result
