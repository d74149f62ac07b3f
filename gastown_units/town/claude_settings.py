"""Claude's hook settings for autonomous roles (contract §3.4), written once, never replaced.

Gas Town writes ``<dir>/.claude/settings.json`` before it starts Claude so that the agent
primes itself and reads its mail; an existing file is the operator's and is left alone.
"""

from __future__ import annotations

from pathlib import Path

from gastown_units.town.identity import Identity, Role
from gastown_units.town.jsonfile import write_json_atomic
from gastown_units.town.layout import Town

_AUTONOMOUS_HOOKS = {
    "SessionStart": "gt prime --hook && gt mail check --inject && gt nudge deacon session-started",
    "PreCompact": "gt prime --hook",
    "UserPromptSubmit": "gt mail check --inject",
    "Stop": "gt costs record",
}


def settings_dir(identity: Identity, town: Town) -> Path | None:
    """Where the role's ``.claude/`` lives; None for roles Gas Town writes none for."""
    if identity.role is Role.DEACON:
        return town.deacon_dir
    if identity.role in (Role.WITNESS, Role.REFINERY):
        return town.rig_dir(str(identity.rig)) / str(identity.role)
    if identity.role is Role.POLECAT:
        return town.rig_dir(str(identity.rig)) / "polecats"
    return None


def autonomous_settings() -> dict[str, object]:
    return {"hooks": {
        event: [{"matcher": "", "hooks": [{"type": "command", "command": command}]}]
        for event, command in _AUTONOMOUS_HOOKS.items()}}


def ensure_claude_settings(identity: Identity, town: Town) -> Path | None:
    """Write the autonomous template if the role has none yet; return the path written."""
    base = settings_dir(identity, town)
    if base is None:
        return None
    path = base / ".claude" / "settings.json"
    if path.exists():
        return None
    write_json_atomic(path, autonomous_settings(), mode=0o600)
    return path
