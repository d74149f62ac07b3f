"""``gt sling``: hand a bead to a new polecat of a rig (what auto-spawn uses)."""

from __future__ import annotations

from pathlib import Path

from gastown_units.errors import ToolError
from gastown_units.ports import runner


class Sling:
    def __init__(self, *, binary: str, cwd: Path, timeout: float,
                 env: dict[str, str] | None = None) -> None:
        self.binary = binary
        self.cwd = cwd
        self.timeout = timeout
        self.env = env or {}

    def sling(self, bead: str, rig: str) -> str:
        result = runner.run([self.binary, "sling", bead, rig], timeout=self.timeout,
                            cwd=self.cwd, env=self.env)
        if not result.ok:
            raise ToolError(f"gt sling {bead} {rig} failed: {result.error_line()}")
        return result.stdout.strip()
