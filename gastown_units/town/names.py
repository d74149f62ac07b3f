"""Validation of names that reach tmux, paths and commands (design rule 5)."""

from __future__ import annotations

import re

from gastown_units.errors import BadInput

#: Longest rig, polecat or crew name: short enough for a file name, a tmux target and a
#: session name built from two of them.
MAX_NAME = 64
#: Longest session name (``<prefix>-<rig>-<role>-<name>`` from two names of MAX_NAME).
MAX_SESSION = 200

# No leading '-' (it would read as an option); ASCII only; fullmatch, since ``$`` would
# accept a trailing newline.
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


def valid_name(name: str, max_len: int = MAX_NAME) -> bool:
    """True if ``name`` is safe as a rig, polecat, crew or session name."""
    return (isinstance(name, str) and len(name) <= max_len
            and NAME_RE.fullmatch(name) is not None)


def check_name(kind: str, name: str) -> str:
    """Return ``name`` or raise BadInput (a ValueError) saying which kind of name is bad."""
    limit = MAX_SESSION if kind == "session" else MAX_NAME
    if not valid_name(name, limit):
        shown = name if len(name) <= 80 else f"{name[:80]}…"
        raise BadInput(f"invalid {kind} name {shown!r}: only letters, digits, '_' and '-' "
                       f"(not first), at most {limit} characters")
    return name
