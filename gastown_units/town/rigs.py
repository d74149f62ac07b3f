"""The rig registry (``mayor/rigs.json``) and bead prefixes (§1.3, §4.1)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from gastown_units.town.jsonfile import (
    DamagedFile,
    note_damage,
    parse_json,
    read_json,
    read_json_object,
    read_text,
)
from gastown_units.town.layout import Town
from gastown_units.town.names import valid_name

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "gt"


@dataclass(frozen=True)
class Rig:
    name: str
    prefix: str  # bead prefix, trailing '-' dropped (config.GetRigPrefix)
    #: [L] session prefix: ``beads.prefix`` exactly as stored, or ``gt`` (2026 §3.1)
    session_prefix: str = DEFAULT_PREFIX


def load_rigs(town: Town) -> dict[str, Rig]:
    """Rigs by name: the keys of ``rigs``. Raises ValueError for a malformed file.

    A missing file means no rigs (as in Gas Town). Names that are unsafe for tmux and paths
    are rejected here, once, so that no later code sees them.
    """
    data = read_json_object(town.rigs_json)
    if data is None:
        return {}
    rigs = data.get("rigs")
    if not isinstance(rigs, dict):
        raise DamagedFile(town.rigs_json, "no 'rigs' object")
    result: dict[str, Rig] = {}
    for name, entry in rigs.items():
        if not valid_name(name) or name.startswith("-") or "\n" in name:
            raise DamagedFile(town.rigs_json, f"invalid rig name {name!r}")
        result[name] = Rig(name, _rig_json_prefix(entry), _stored_prefix(entry))
    return result


def _stored_prefix(entry: object) -> str:
    beads = entry.get("beads") if isinstance(entry, dict) else None
    prefix = beads.get("prefix") if isinstance(beads, dict) else None
    return prefix if isinstance(prefix, str) and prefix else DEFAULT_PREFIX


def _rig_json_prefix(entry: object) -> str:
    beads = entry.get("beads") if isinstance(entry, dict) else None
    prefix = beads.get("prefix") if isinstance(beads, dict) else None
    if isinstance(prefix, str) and prefix.strip():
        return prefix.strip().removesuffix("-")
    return DEFAULT_PREFIX


@dataclass(frozen=True)
class Route:
    """One line of ``.beads/routes.jsonl``: IDs starting ``prefix-`` live in ``path``."""

    prefix: str  # without its trailing hyphen
    path: str  # relative to the town root; "." is the town's own database

    @property
    def rig(self) -> str | None:
        """The rig a route belongs to: its path's first segment (None for the town)."""
        first = self.path.strip("/").split("/")[0]
        return first if first and first != "." else None


def read_routes(town: Town) -> list[Route]:
    """Every well-formed route in file order; blank, ``#`` and malformed lines skipped
    (beads.md §7.6). A missing file means no routes; DamagedFile when it exists but
    cannot be read at all (a directory, a dangling symlink)."""
    text = read_text(town.routes, shown_only=True)  # a bad byte spoils its line only
    if text is None:
        return []
    routes: list[Route] = []
    bad = 0
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        route = _route(line)
        if route is None:
            bad += 1
        else:
            routes.append(route)
    if bad:
        note_damage(town.routes, f"{bad} malformed line(s) skipped")
    if bad and (str(town.routes), bad, len(routes)) not in _warned_routes:
        _warned_routes.add((str(town.routes), bad, len(routes)))
        log.warning("%s: %d malformed line(s) skipped (beads routed there are not found)",
                    town.routes, bad)
    return routes


_warned_routes: set[tuple[str, int, int]] = set()


def _route(line: str) -> Route | None:
    """One route line, or None when it is malformed (bad bytes, not JSON, wrong types)."""
    if "\ufffd" in line:
        return None
    try:
        route = parse_json(line)
    except ValueError:
        return None
    if not isinstance(route, dict):
        return None
    prefix, path = route.get("prefix"), route.get("path")
    if isinstance(prefix, str) and isinstance(path, str) and prefix and path.strip():
        return Route(prefix.removesuffix("-"), path.strip())
    return None


def route_prefixes(town: Town) -> dict[str, str]:
    """Rig name → prefix from ``.beads/routes.jsonl`` (first route per rig wins)."""
    result: dict[str, str] = {}
    for route in read_routes(town):
        if route.rig is not None and route.rig not in result:
            result[route.rig] = route.prefix
    return result


def rig_database(town: Town, rig: str, prefix: str) -> Path:
    """The ``.beads`` directory holding the rig's beads: where ``bd`` routes the rig's
    prefix (beads.md §7.6: ``<town>/<path>/.beads``), else the rig's own ``<rig>/.beads``
    (gastown.md §1.4, often a redirect), else the town's. ``bd`` follows redirects itself.
    """
    for route in read_routes(town):
        if route.prefix == prefix:
            if route.path in (".", "./"):
                return town.root / ".beads"
            return town.root / route.path / ".beads"
    own = town.rig_dir(rig) / ".beads"
    return own if own.is_dir() else town.root / ".beads"


def agent_databases(town: Town, prefixes: dict[str, str]) -> list[Path]:
    """The distinct databases that hold the agent beads of these rigs (rig → prefix):
    one ``bd list`` each, however many polecats they hold."""
    found: dict[Path, None] = {}
    for rig, prefix in sorted(prefixes.items()):
        found.setdefault(rig_database(town, rig, prefix), None)
    return list(found)


def rig_prefixes(town: Town, rigs: dict[str, Rig]) -> dict[str, str]:
    """Prefix per rig: routes.jsonl first, then rigs.json, then ``gt`` (§4.1)."""
    routes = route_prefixes(town)
    return {name: routes.get(name, rig.prefix) for name, rig in rigs.items()}


def default_branch(town: Town, rig: str) -> str:
    """``default_branch`` of ``<rig>/config.json``; ``main`` when missing or unreadable
    (pre-sync is best effort, and a wrong branch only makes its pull fail)."""
    try:
        data = read_json(town.rig_dir(rig) / "config.json")
    except ValueError as exc:
        log.warning("%s; pre-sync uses branch main", exc)
        return "main"
    branch = data.get("default_branch") if isinstance(data, dict) else None
    return branch if isinstance(branch, str) and branch.strip() else "main"
