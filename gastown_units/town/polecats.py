"""Polecats on disk: who exists, where their worktree is, when they last did anything."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from gastown_units.town.jsonfile import DamagedFile, read_bytes
from gastown_units.town.layout import Town
from gastown_units.town.names import valid_name

log = logging.getLogger(__name__)

MAX_NAME = 64  # session names get a prefix; tmux and paths stay well within limits
_warned: set[tuple[str, str]] = set()


def usable_name(name: str) -> bool:
    """A polecat name we may put into a session name, a path and an argv."""
    return (valid_name(name) and "\n" not in name and not name.startswith("-")
            and len(name) <= MAX_NAME)


def polecat_names(town: Town, rig: str) -> list[str]:
    """Immediate subdirectories of ``<rig>/polecats/``, skipping dot-dirs (§1.4).

    A name that is not a usable name (a newline, a leading '-', too long) is skipped with
    one warning: tmux would store another name, and the agent is not ours to judge.
    DamagedFile when the directory exists but cannot be listed.
    """
    base = town.rig_dir(rig) / "polecats"
    try:
        entries = sorted(os.listdir(base))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise DamagedFile(base, f"cannot be listed ({exc.strerror or exc})") from None
    names = []
    for name in entries:
        if name.startswith(".") or not (base / name).is_dir():
            continue
        if not usable_name(name):
            if (rig, name) not in _warned:
                _warned.add((rig, name))
                log.warning("%s: polecat directory %r has no usable name (letters, digits, "
                            "'_' and '-', not leading '-', at most %d): not supervised",
                            base, name, MAX_NAME)
            continue
        names.append(name)
    return names


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
        data = read_bytes(dot, limit=64 * 1024)
    except DamagedFile:
        return None
    text = os.fsdecode(data or b"").strip()  # a path: any bytes, as the kernel takes them
    if not text.startswith("gitdir:") or "\x00" in text:
        return None
    target = Path(text.removeprefix("gitdir:").strip())
    if target.is_absolute():
        return target
    try:
        return (tree / target).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None


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
