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
from gastown_units.town.jsonfile import DamagedFile, read_json_object
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
    ready_prompt: str | None = None  # a screen line starting with this: ready (§3.5)
    ready_delay: float = 0.0  # without a known prompt: seconds until it is ready (§3.5)

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


@dataclass(frozen=True)
class Preset:
    """A built-in runtime of Gas Town (§3.4) and how to tell it is ready (§3.5)."""

    argv: tuple[str, ...]
    process_names: frozenset[str] = frozenset()
    takes_prompt: bool = True
    ready_prompt: str | None = None
    ready_delay: float = 0.0


# Only Claude has a known prompt (``❯ ``); codex and opencode have a known ready delay.
PRESETS: Mapping[str, Preset] = {
    "claude": Preset(("claude", "--dangerously-skip-permissions"), frozenset({"node", "claude"}),
                     ready_prompt="❯ ", ready_delay=10.0),
    "gemini": Preset(("gemini", "--approval-mode", "yolo")),
    "codex": Preset(("codex", "--yolo"), takes_prompt=False, ready_delay=3.0),
    "cursor": Preset(("cursor-agent", "-f")),
    "auggie": Preset(("auggie", "--allow-indexing")),
    "amp": Preset(("amp", "--dangerously-allow-all", "--no-ide")),
    "opencode": Preset(("opencode",), takes_prompt=False, ready_delay=8.0),
}


def resolve_agent(town: Town, role: Role, rig: str | None, override: str | None
                  ) -> AgentProgram:
    """The agent for ``role``: the override, else rig/town settings, else ``claude``.

    Raises ValueError (DamagedFile naming the file for a settings file) when the agent
    cannot be resolved: a damaged file never falls back to a default runtime, whose
    liveness rule would make the running agent look like a zombie.
    """
    if override:
        argv = tuple(shlex.split(override))
        if not argv:
            raise ValueError("GT_AGENT_COMMAND is empty")
        return AgentProgram("override", argv)
    town_path = town.town_settings
    town_settings = _settings(town_path)
    rig_path = town.rig_settings(rig) if rig else town_path
    rig_settings = _settings(rig_path) if rig else {}
    runtime = rig_settings.get("runtime")  # legacy: a name, or a runtime object (not ours)
    name = (
        _lookup(rig_settings, rig_path, "role_agents", str(role))
        or _lookup(town_settings, town_path, "role_agents", str(role))
        or _str(runtime)
        or _field(rig_settings, rig_path, "agent")
        or _field(town_settings, town_path, "default_agent")
        or "claude"
    )
    custom, where = _lookup_obj(rig_settings, rig_path, name), rig_path
    if custom is None:
        custom, where = _lookup_obj(town_settings, town_path, name), town_path
    if custom is not None:
        command = _str(custom.get("command"))
        if not command:
            raise DamagedFile(where, f"agent {name!r} has no command")
        args = custom.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise DamagedFile(where, f"agent {name!r}: args must be a list of strings")
        prompt, delay = _readiness(custom, name)
        return AgentProgram(name, (command, *args),
                            takes_prompt=custom.get("prompt_mode") != "none",
                            ready_prompt=prompt, ready_delay=delay)
    if name not in PRESETS:
        shown = f"{rig_path} or {town_path}" if rig else str(town_path)
        raise ValueError(f"unknown agent {name!r} (not a preset nor in 'agents' of {shown})")
    preset = PRESETS[name]
    argv = (_claude_path(), *preset.argv[1:]) if name == "claude" else preset.argv
    return AgentProgram(name, argv, preset.process_names, preset.takes_prompt,
                        preset.ready_prompt, preset.ready_delay)


def _readiness(custom: Mapping[str, object], name: str) -> tuple[str | None, float]:
    """A custom agent's ``ready_prompt_prefix`` and ``ready_delay_ms`` (top level or in its
    ``tmux`` table); a custom agent named like a preset inherits the preset's."""
    tables = [custom] + [t for t in (custom.get("tmux"),) if isinstance(t, Mapping)]
    preset = PRESETS.get(name)
    prompt = preset.ready_prompt if preset else None
    delay = preset.ready_delay if preset else 0.0
    for table in tables:
        if isinstance(table.get("ready_prompt_prefix"), str):
            prompt = str(table["ready_prompt_prefix"]) or None
        raw = table.get("ready_delay_ms")
        if isinstance(raw, (int, float)) and not isinstance(raw, bool) and 0 <= raw <= 600_000:
            delay = raw / 1000.0
    return prompt, delay


def _settings(path: Path) -> dict[str, object]:
    """A settings file: ``{}`` when missing; DamagedFile when unreadable or not an object."""
    return read_json_object(path) or {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _field(settings: Mapping[str, object], path: Path, key: str) -> str | None:
    """A name-valued setting: absent or null is "not set"; anything but a string is damage."""
    value = settings.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DamagedFile(path, f"{key!r} must be a string, not {type(value).__name__}")
    return value


def _table(settings: Mapping[str, object], path: Path, table: str) -> dict[str, object]:
    entries = settings.get(table)
    if entries is None:
        return {}
    if not isinstance(entries, dict):
        raise DamagedFile(path, f"{table!r} must be an object, not {type(entries).__name__}")
    return entries


def _lookup(settings: Mapping[str, object], path: Path, table: str, key: str) -> str | None:
    return _field(_table(settings, path, table), path, key)


def _lookup_obj(settings: Mapping[str, object], path: Path, key: str
                ) -> dict[str, object] | None:
    entry = _table(settings, path, "agents").get(key)
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise DamagedFile(path, f"agents.{key} must be an object, not {type(entry).__name__}")
    return entry


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
