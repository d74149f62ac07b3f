"""Polecats on disk: who exists, where their worktree is, when they last did anything."""

from __future__ import annotations

import os
from pathlib import Path

from gastown_units.town.layout import Town
from gastown_units.town.names import valid_name


def polecat_names(town: Town, rig: str) -> list[str]:
    """Immediate subdirectories of ``<rig>/polecats/``, skipping dot-dirs (§1.4)."""
    base = town.rig_dir(rig) / "polecats"
    try:
        entries = sorted(base.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [p.name for p in entries
            if p.is_dir() and not p.name.startswith(".") and valid_name(p.name)]


def worktree(town: Town, rig: str, name: str) -> Path | None:
    """New layout ``polecats/<n>/<rig>`` else old ``polecats/<n>`` (if it holds ``.git``)."""
    base = town.rig_dir(rig) / "polecats" / name
    if (base / rig).is_dir():
        return base / rig
    if (base / ".git").exists():
        return base
    return None


def git_dir(tree: Path) -> Path | None:
    """The worktree's git dir: ``.git`` itself, or where a ``.git`` file points."""
    dot = tree / ".git"
    if dot.is_dir():
        return dot
    try:
        text = dot.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    target = Path(text.removeprefix("gitdir:").strip())
    return target if target.is_absolute() else (tree / target).resolve()


def last_activity(tree: Path) -> float | None:
    """Newest mtime of the files the witness MVP watched (§6.7); None if none exist."""
    candidates = [tree / ".git", tree / ".gastown" / "state.json",
                  tree / ".beads" / "issues.jsonl"]
    gdir = git_dir(tree)
    if gdir is not None:
        candidates += [gdir / "logs" / "HEAD", gdir / "index"]
    times = []
    for path in candidates:
        try:
            times.append(os.stat(path).st_mtime)
        except OSError:
            continue
    return max(times) if times else None
