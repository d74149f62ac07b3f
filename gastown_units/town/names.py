"""Validation of names that reach tmux, paths and commands (design rule 5)."""

from __future__ import annotations

import re

NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def valid_name(name: str) -> bool:
    """True if ``name`` is safe as a rig, polecat, crew or session name."""
    return bool(NAME_RE.match(name))


def check_name(kind: str, name: str) -> str:
    """Return ``name`` or raise ValueError saying which kind of name is bad."""
    if not valid_name(name):
        raise ValueError(f"invalid {kind} name {name!r}: only letters, digits, '_' and '-'")
    return name
