"""The rig registry (``mayor/rigs.json``) and bead prefixes (§1.3, §4.1)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from gastown_units.town.jsonfile import read_json
from gastown_units.town.layout import Town
from gastown_units.town.names import valid_name

DEFAULT_PREFIX = "gt"


@dataclass(frozen=True)
class Rig:
    name: str
    prefix: str


def load_rigs(town: Town) -> dict[str, Rig]:
    """Rigs by name: the keys of ``rigs``. Raises ValueError for a malformed file.

    A missing file means no rigs (as in Gas Town). Names that are unsafe for tmux and paths
    are rejected here, once, so that no later code sees them.
    """
    data = read_json(town.rigs_json)
    if data is None:
        return {}
    rigs = data.get("rigs") if isinstance(data, dict) else None
    if not isinstance(rigs, dict):
        raise ValueError(f"{town.rigs_json}: no 'rigs' object")
    result: dict[str, Rig] = {}
    for name, entry in rigs.items():
        if not valid_name(name):
            raise ValueError(f"{town.rigs_json}: invalid rig name {name!r}")
        result[name] = Rig(name, _rig_json_prefix(entry))
    return result


def _rig_json_prefix(entry: object) -> str:
    beads = entry.get("beads") if isinstance(entry, dict) else None
    prefix = beads.get("prefix") if isinstance(beads, dict) else None
    if isinstance(prefix, str) and prefix.strip():
        return prefix.strip().removesuffix("-")
    return DEFAULT_PREFIX


def route_prefixes(town: Town) -> dict[str, str]:
    """Rig name → prefix from ``.beads/routes.jsonl`` (first route per rig wins)."""
    try:
        lines = town.routes.read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return {}
    result: dict[str, str] = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            route = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(route, dict):
            continue
        prefix, path = route.get("prefix"), route.get("path")
        if not isinstance(prefix, str) or not isinstance(path, str):
            continue
        first = path.strip("/").split("/")[0]
        if first and first != "." and first not in result:
            result[first] = prefix.removesuffix("-")
    return result


def rig_prefixes(town: Town, rigs: dict[str, Rig]) -> dict[str, str]:
    """Prefix per rig: routes.jsonl first, then rigs.json, then ``gt`` (§4.1)."""
    routes = route_prefixes(town)
    return {name: routes.get(name, rig.prefix) for name, rig in rigs.items()}


def default_branch(town: Town, rig: str) -> str:
    """``default_branch`` of ``<rig>/config.json``; ``main`` when missing or unreadable."""
    try:
        data = read_json(town.rig_dir(rig) / "config.json")
    except (ValueError, OSError):
        return "main"
    branch = data.get("default_branch") if isinstance(data, dict) else None
    return branch if isinstance(branch, str) and branch.strip() else "main"
