"""Where a town's beads live on disk, and whether they changed since we last looked.

Mail, rig beads and agent beads are read only through ``bd``/``gt`` (beads.md §1), and each
call costs a process (0.2-6.7 s against a real Dolt store). The files behind them are the
cheap way to tell that nothing changed: the ``.beads`` directories of the town and of every
route (beads.md §7.1, §7.6), and inside each the files a write touches — ``beads.db``
and its journal (SQLite, [O]), ``issues.jsonl``, and the embedded Dolt store's
``dolt/<db>/.dolt/noms`` (§7.4). A Dolt *server* keeps its data elsewhere: then nothing
here changes and callers must fall back to reading (``signature`` is None).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from gastown_units.town.layout import Town
from gastown_units.town.rigs import read_routes

# Files that only readers touch, or that say nothing about the data.
NOT_DATA = frozenset({"LOCK", ".standin.lock", "bd.sock", "daemon.lock", "daemon.log",
                       "daemon.pid", "last-touched", ".gitignore"})


def resolve_store(beads: Path) -> Path:
    """One hop of ``.beads/redirect`` (relative to the directory holding ``.beads``)."""
    try:
        target = (beads / "redirect").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return beads
    if not target or "\0" in target:
        return beads
    path = Path(target) if os.path.isabs(target) else beads.parent / target
    return path if path.is_dir() else beads


def store_dirs(town: Town) -> list[Path]:
    """The distinct ``.beads`` directories of the town: its own, every route's target and
    every rig's own (redirects followed); a damaged ``routes.jsonl`` yields the others."""
    found: dict[Path, None] = {}
    candidates = [town.root / ".beads"]
    with contextlib.suppress(ValueError):
        candidates += [town.root / ".beads" if r.path in (".", "./")
                       else town.root / r.path / ".beads" for r in read_routes(town)]
    with contextlib.suppress(OSError):
        candidates += sorted(p / ".beads" for p in town.root.iterdir()
                             if (p / ".beads").is_dir())
    for beads in candidates:
        store = resolve_store(beads)
        if store.is_dir():
            found.setdefault(store, None)
        if beads.is_dir():
            found.setdefault(beads, None)  # its redirect file may be changed
    return list(found)


def data_dirs(store: Path) -> list[Path]:
    """The directories under ``store`` whose entries change when its data does: the store
    itself and, for embedded Dolt, ``dolt/`` and every ``dolt/<db>/.dolt/noms``."""
    dirs = [store]
    dolt = store / "dolt"
    if dolt.is_dir():
        dirs.append(dolt)
        with contextlib.suppress(OSError):
            dirs += sorted(p / ".dolt" / "noms" for p in dolt.iterdir()
                           if (p / ".dolt" / "noms").is_dir())
        if (dolt / ".dolt" / "noms").is_dir():
            dirs.append(dolt / ".dolt" / "noms")
    return dirs


def counts_as_data(name: str) -> bool:
    """Whether a change of entry ``name`` in a data directory may be a change of data.

    >>> counts_as_data("issues.jsonl"), counts_as_data(".standin.lock"), counts_as_data("LOCK")
    (True, False, False)
    """
    return name not in NOT_DATA


def signature(stores: list[Path]) -> tuple[tuple[str, int, int, int], ...] | None:
    """What every data file of ``stores`` looks like now (name, inode, size, mtime), to
    compare with an earlier look; None when no store holds a data file (a Dolt server:
    its data is elsewhere, so a change cannot be seen here)."""
    seen: list[tuple[str, int, int, int]] = []
    for store in stores:
        for directory in data_dirs(store):
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue
            for entry in entries:
                if not counts_as_data(entry.name):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                seen.append((entry.path, st.st_ino, st.st_size, st.st_mtime_ns))
    has_data = any(Path(p).name in ("beads.db", "issues.jsonl") or "/.dolt/" in p
                   for p, *_ in seen)
    return tuple(sorted(seen)) if has_data else None
