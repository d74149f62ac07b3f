"""What the polecat sweep last read from ``bd``, reused while the stores are unchanged.

Each ``bd`` call costs a process (0.1-6.7 s) and an event sweep makes four of them before
it can restart a crashed polecat. The beads stores' files tell cheaply that nothing
changed (:mod:`gastown_units.town.stores`): a cache entry is keyed by their signature
taken *before* the reads it holds, so a write during those reads invalidates it, and it
is also bounded in age. Only successful reads are stored; no signature (a Dolt server)
means no cache. A damaged cache file is no cache (it is only ever a shortcut).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gastown_units.ports.beads import AgentBead
from gastown_units.town.jsonfile import parse_json, read_bytes, write_json_atomic

log = logging.getLogger(__name__)

VERSION = 2  # 2: the key is the signature itself, not its SHA-256

Signature = tuple[tuple[str, int, int, int], ...]


def digest(sig: Signature | None, key: str) -> str | None:
    """One string for a store signature and what was asked (``key``); None: uncacheable.

    The signature itself, as JSON: a few hundred bytes per store, compared whole (no hash
    to import and compute on every sweep's start, and no collision to think about).
    """
    if sig is None:
        return None
    return json.dumps([key, sig], separators=(",", ":"))


@dataclass
class BdReads:
    """The bd facts of one sweep: agent beads, rig beads, and the hooked beads asked so
    far (``asked``: every ID asked, found or not; ``hooked``: the found ones)."""

    agents: dict[str, AgentBead]
    rig_beads: dict[str, dict[str, Any]]
    hooked: dict[str, dict[str, Any]] = field(default_factory=dict)
    asked: set[str] = field(default_factory=set)
    read_at: float = field(default_factory=time.time)
    cached: bool = False  # came from the cache file, not from bd in this process
    dirty: bool = True  # holds reads the cache file lacks

    def known(self, ids: Iterable[str]) -> bool:
        """Whether every hooked bead in ``ids`` was asked already."""
        return set(ids) <= self.asked

    def add_hooked(self, ids: Iterable[str], found: dict[str, dict[str, Any]]) -> None:
        self.asked.update(ids)
        self.dirty = True
        self.hooked.update({k: {"id": k, "status": v.get("status")} for k, v in found.items()})


def load(path: Path, wanted: str | None, max_age: float, now: float | None = None
         ) -> BdReads | None:
    """The cached reads stored under ``wanted``, if at most ``max_age`` old
    (``GT_FACT_MAX_AGE``); else None (never raises
    for a missing, damaged, foreign or stale file)."""
    if wanted is None:
        return None
    now = time.time() if now is None else now
    try:
        raw = read_bytes(path, limit=4 * 1024 * 1024)
        data = parse_json(raw.decode("utf-8")) if raw else None
        if not isinstance(data, dict) or data.get("version") != VERSION or \
                data.get("key") != wanted:
            return None
        read_at = float(data["read_at"])
        if not 0 <= now - read_at <= max_age:
            return None
        agents = {str(k): _agent(v) for k, v in data["agents"].items()}
        rig_beads = {str(k): dict(v) for k, v in data["rig_beads"].items()}
        hooked = {str(k): dict(v) for k, v in data["hooked"].items()}
        asked = {str(i) for i in data["asked"]}
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as exc:
        log.debug("bd cache %s not used: %s", path, exc)
        return None
    return BdReads(agents, rig_beads, hooked, asked, read_at, cached=True, dirty=False)


def _agent(value: Any) -> AgentBead:
    if not isinstance(value, dict):
        raise TypeError("agent bead is not an object")
    hook_column = value.get("hook_column")
    fields = {k: value[k] for k in ("id", "hook_bead", "agent_state", "updated_at", "status")}
    if not all(isinstance(v, str) for v in fields.values()) or \
            not (hook_column is None or isinstance(hook_column, str)):
        raise TypeError("agent bead field of the wrong type")
    labels = value["labels"]
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise TypeError("agent bead labels are not strings")
    return AgentBead(**fields, labels=tuple(labels), hook_column=hook_column)


def save(path: Path, key: str | None, reads: BdReads) -> None:
    """Store ``reads`` under ``key`` (the digest taken before they were read); a failure
    to write is logged, never raised (the next sweep reads bd)."""
    if key is None or not reads.dirty:
        return
    data = {"version": VERSION, "key": key, "read_at": reads.read_at,
            "agents": {k: asdict(v) for k, v in reads.agents.items()},
            "rig_beads": reads.rig_beads, "hooked": reads.hooked,
            "asked": sorted(reads.asked)}
    try:
        write_json_atomic(path, data, mode=0o600)
    except (OSError, TypeError, ValueError) as exc:
        log.warning("cannot write the bd cache %s: %s", path, exc)
    else:
        reads.dirty = False
