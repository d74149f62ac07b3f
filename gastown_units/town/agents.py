"""Which agent program a role runs, its start command and its startup prompt (§3.4).

The start command puts the role's environment *inside* the command
(``exec env K=V … agent … prompt``): ``tmux set-environment`` does not reach a pane
that has already started, and ``exec`` makes the pane show the agent, not a shell.
Every token is quoted with :func:`shlex.quote`; this is the only shell line we build.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gastown_units.town.identity import Identity, Role
from gastown_units.town.jsonfile import read_json
from gastown_units.town.layout import Town

SHELLS = frozenset({"bash", "zsh", "sh", "fish", "tcsh", "ksh", "dash"})
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")  # Claude shows its version as the process name


@dataclass(frozen=True)
class AgentProgram:
    """An agent runtime: argv without the prompt, and how to recognise it in a pane."""

    name: str
    argv: tuple[str, ...]
    process_names: frozenset[str] = frozenset()  # empty: any non-shell process counts
    takes_prompt: bool = True

    def is_running(self, pane_command: str) -> bool:
        """Liveness from ``#{pane_current_command}`` (§3.5): the agent, not a shell."""
        if not pane_command or pane_command in SHELLS:
            return False
        if not self.process_names:
            return True
        return pane_command in self.process_names or bool(VERSION_RE.match(pane_command))


def _claude_path() -> str:
    found = shutil.which("claude")
    if found:
        return found
    local = Path.home() / ".claude" / "local" / "claude"
    return str(local) if local.exists() else "claude"


# Built-in presets of Gas Town (§3.4); the process names of claude are node/claude.
PRESETS: Mapping[str, tuple[tuple[str, ...], frozenset[str], bool]] = {
    "claude": (("claude", "--dangerously-skip-permissions"), frozenset({"node", "claude"}), True),
    "gemini": (("gemini", "--approval-mode", "yolo"), frozenset(), True),
    "codex": (("codex", "--yolo"), frozenset(), False),
    "cursor": (("cursor-agent", "-f"), frozenset(), True),
    "auggie": (("auggie", "--allow-indexing"), frozenset(), True),
    "amp": (("amp", "--dangerously-allow-all", "--no-ide"), frozenset(), True),
    "opencode": (("opencode",), frozenset(), False),
}


def resolve_agent(town: Town, role: Role, rig: str | None, override: str | None
                  ) -> AgentProgram:
    """The agent for ``role``: the override, else rig/town settings, else ``claude``.

    Raises ValueError for an unusable override or settings file.
    """
    if override:
        argv = tuple(shlex.split(override))
        if not argv:
            raise ValueError("GT_AGENT_COMMAND is empty")
        return AgentProgram("override", argv)
    rig_settings = _settings(town.rig_settings(rig)) if rig else {}
    town_settings = _settings(town.town_settings)
    name = (
        _lookup(rig_settings, "role_agents", str(role))
        or _lookup(town_settings, "role_agents", str(role))
        or _str(rig_settings.get("runtime"))
        or _str(rig_settings.get("agent"))
        or _str(town_settings.get("default_agent"))
        or "claude"
    )
    custom = _lookup_obj(rig_settings, "agents", name) or _lookup_obj(town_settings, "agents", name)
    if custom:
        command = _str(custom.get("command"))
        if not command:
            raise ValueError(f"agent {name!r} in settings has no command")
        args = custom.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ValueError(f"agent {name!r} in settings: args must be a list of strings")
        return AgentProgram(name, (command, *args),
                            takes_prompt=custom.get("prompt_mode") != "none")
    if name not in PRESETS:
        raise ValueError(f"unknown agent {name!r} (not a preset nor in settings 'agents')")
    argv, processes, takes_prompt = PRESETS[name]
    if name == "claude":
        argv = (_claude_path(), *argv[1:])
    return AgentProgram(name, argv, processes, takes_prompt)


def _settings(path: Path) -> dict[str, object]:
    data = read_json(path)
    return data if isinstance(data, dict) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _lookup(settings: Mapping[str, object], table: str, key: str) -> str | None:
    entries = settings.get(table)
    return _str(entries.get(key)) if isinstance(entries, dict) else None


def _lookup_obj(settings: Mapping[str, object], table: str, key: str
                ) -> dict[str, object] | None:
    entries = settings.get(table)
    entry = entries.get(key) if isinstance(entries, dict) else None
    return entry if isinstance(entry, dict) else None


# --- startup prompts -------------------------------------------------------------------

_BEACONS: Mapping[Role, tuple[str, str, str]] = {
    # role: (sender, topic, instructions) — §3.4 table
    Role.DEACON: ("daemon", "patrol", "I am Deacon. Start patrol: check gt hook, if empty "
                  "create mol-deacon-patrol wisp and execute it."),
    Role.BOOT: ("daemon", "triage", "Run `gt boot triage` now."),
    Role.WITNESS: ("deacon", "patrol", "I am Witness for {rig}. Start patrol: check gt hook, "
                   "if empty create mol-witness-patrol wisp and execute it."),
    Role.REFINERY: ("deacon", "patrol", "Check your hook and begin patrol."),
}


def startup_prompt(identity: Identity, now: datetime) -> str:
    """Beacon line, blank line, instructions (``internal/session/startup.go``)."""
    sender, topic, instructions = _BEACONS.get(
        identity.role, ("daemon", "lifecycle-restart", "Check your hook and begin work."))
    recipient = {Role.DEACON: "deacon", Role.BOOT: "boot"}.get(identity.role, identity.bd_actor)
    beacon = f"[GAS TOWN] {recipient} <- {sender} • {now.strftime('%Y-%m-%dT%H:%M')} • {topic}"
    return f"{beacon}\n\n{instructions.format(rig=identity.rig)}"


def start_command(env: Mapping[str, str], agent: AgentProgram, prompt: str | None) -> str:
    """``exec env K=V … agent args "prompt"`` with sorted keys, every token shell-quoted."""
    for key in env:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise ValueError(f"invalid environment variable name {key!r}")
    words = ["exec", "env"]
    words += [f"{key}={shlex.quote(env[key])}" for key in sorted(env)]
    words += [shlex.quote(arg) for arg in agent.argv]
    if prompt and agent.takes_prompt:
        words.append(shlex.quote(prompt))
    return " ".join(words)
