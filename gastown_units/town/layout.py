"""Where things live in a town (contract gastown.md §1)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gastown_units.errors import TownError
from gastown_units.town.names import check_name

TOWN_MARKER = Path("mayor") / "town.json"


def find_town_root(start: Path) -> Path | None:
    """Walk up from ``start`` the way Gas Town does (§1.1).

    Inside ``polecats/`` or ``crew/`` the outermost ``mayor/town.json`` wins, since rigs hold
    their own ``mayor/``; otherwise the first one, else the outermost dir with ``mayor/``.
    """
    start = start.resolve()
    nested = "/polecats/" in f"{start}/" or "/crew/" in f"{start}/"
    primary: list[Path] = []
    secondary: Path | None = None
    for path in (start, *start.parents):
        if (path / TOWN_MARKER).is_file():
            if not nested:
                return path
            primary.append(path)
        elif (path / "mayor").is_dir():
            secondary = path
    if primary:
        return primary[-1]
    return secondary


@dataclass(frozen=True)
class Town:
    """A town root and the paths of the files the services read and write."""

    root: Path

    @classmethod
    def open(cls, root: Path | None, cwd: Path | None = None) -> Town:
        """The town at ``root``, or found from ``cwd``; TownError if there is none."""
        if root is None:
            found = find_town_root(cwd or Path(os.getcwd()))
            if found is None:
                raise TownError(
                    "no Gas Town found from the working directory; "
                    "set GT_TOWN_ROOT (e.g. in /etc/gastown/gastown.conf) or pass --town"
                )
            root = found
        try:
            root = root.expanduser()
        except RuntimeError as exc:  # ~nosuchuser
            raise TownError(f"town root {root}: {exc}") from None
        if not root.is_dir():
            raise TownError(f"town root {root} does not exist")
        if not (root / TOWN_MARKER).is_file():
            raise TownError(f"{root} is not a Gas Town: {TOWN_MARKER} is missing")
        return cls(root.resolve())

    # Town-level paths
    @property
    def rigs_json(self) -> Path:
        return self.root / "mayor" / "rigs.json"

    @property
    def daemon_json(self) -> Path:
        return self.root / "mayor" / "daemon.json"

    @property
    def town_settings(self) -> Path:
        return self.root / "settings" / "config.json"

    @property
    def routes(self) -> Path:
        return self.root / ".beads" / "routes.jsonl"

    @property
    def daemon_dir(self) -> Path:
        return self.root / "daemon"

    @property
    def daemon_lock(self) -> Path:
        return self.daemon_dir / "daemon.lock"

    @property
    def agent_locks_dir(self) -> Path:
        """Per-agent locks of our services (one actor per agent)."""
        return self.daemon_dir / "agents"

    @property
    def shutdown_lock(self) -> Path:
        return self.daemon_dir / "shutdown.lock"

    @property
    def shutting_down(self) -> Path:
        """[L] ``gt down`` writes its PID here for its run (gastown-2026.md §1.2)."""
        return self.daemon_dir / "shutting-down"

    @property
    def deacon_dir(self) -> Path:
        return self.root / "deacon"

    @property
    def heartbeat(self) -> Path:
        return self.deacon_dir / "heartbeat.json"

    @property
    def boot_dir(self) -> Path:
        return self.deacon_dir / "dogs" / "boot"

    @property
    def boot_status(self) -> Path:
        return self.boot_dir / ".boot-status.json"

    @property
    def events(self) -> Path:
        return self.root / ".events.jsonl"

    def wisp_config(self, rig: str) -> Path:
        return self.root / ".beads-wisp" / "config" / f"{check_name('rig', rig)}.json"

    # Rig-level paths (§1.4)
    def rig_dir(self, rig: str) -> Path:
        return self.root / check_name("rig", rig)

    def rig_settings(self, rig: str) -> Path:
        return self.rig_dir(rig) / "settings" / "config.json"
