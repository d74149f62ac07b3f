"""How each role's session comes up: one pure start profile per role (design rule 9).

Every service that starts or restarts an agent (the keepers, polecat-health, lifecycle-mail)
asks :func:`start_profile` how, so that a polecat restarted by lifecycle-mail gets the same
pane-died hook and pre-sync as one restarted by polecat-health, and a refinery the same
ready-prompt wait from whichever service starts it (contract §3.4-§3.10, §6.4, §6.5, §6.8).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from gastown_units.town.agents import AgentProgram
from gastown_units.town.identity import Identity, Role

# Roles whose checkout is synced before a (re)start (role TOML needs_pre_sync, §3.6).
PRE_SYNC_ROLES = frozenset({Role.REFINERY, Role.POLECAT, Role.CREW})
STARTUP_FALLBACK = "gt prime && gt mail check --inject && gt nudge deacon session-started"


class Reason(StrEnum):
    """Why a session is being started: the beacon differs, nothing else does."""

    KEEP = "keep"  # a keeper found it missing or a zombie
    CRASH = "crash"  # polecat-health: crashed with work hooked (Gas Town: no prompt)
    LIFECYCLE = "lifecycle"  # a LIFECYCLE cycle/restart request


@dataclass(frozen=True)
class Theme:
    """Status-bar look of a session (§3.10)."""

    bg: str
    fg: str
    label: str

    def options(self, session: str) -> dict[str, str]:
        return {
            "status-style": f"bg={self.bg},fg={self.fg}",
            "status-left-length": "25",
            "status-left": f"{self.label} ",
            "status-right-length": "80",
            "status-interval": "5",
            "status-right": f"#(gt status-line --session={session} 2>/dev/null) %H:%M",
        }


DEACON_THEME = Theme("#2d1f3d", "#c0b0d0", "🐺 Deacon")
MAYOR_THEME = Theme("#3d3200", "#ffd700", "🎩 Mayor")
_RIG_PALETTE = (
    ("#1e3a5f", "#e0e0e0"), ("#2d5a3d", "#e0e0e0"), ("#8b4513", "#f5f5dc"),
    ("#4a3050", "#e0e0e0"), ("#4a5568", "#e0e0e0"), ("#b33a00", "#f5f5dc"),
    ("#1a1a2e", "#c0c0c0"), ("#722f37", "#f5f5dc"), ("#0d5c63", "#e0e0e0"),
    ("#6d4c41", "#f5f5dc"),
)  # ocean forest rust plum slate ember midnight wine teal copper (§3.10)
_ICONS = {"witness": "🦉", "refinery": "🏭", "crew": "👷", "polecat": "😺"}


def fnv1a_32(text: str) -> int:
    value = 2166136261
    for byte in text.encode():
        value = ((value ^ byte) * 16777619) & 0xFFFFFFFF
    return value


def rig_theme(identity: Identity) -> Theme:
    """The rig's colours (FNV-1a of the rig name picks one of ten) and the agent's label."""
    bg, fg = _RIG_PALETTE[fnv1a_32(str(identity.rig)) % len(_RIG_PALETTE)]
    worker = identity.name or str(identity.role)
    label = f"{identity.rig}/crew/{worker}" if identity.role is Role.CREW else \
        f"{identity.rig}/{worker}"
    return Theme(bg, fg, f"{_ICONS.get(identity.role.value, '')} {label}".strip())


@dataclass(frozen=True)
class StartProfile:
    """Everything about bringing one role's session up, decided before anything runs."""

    theme: Theme | None = None
    beacon: bool = True  # pass the startup prompt (beacon + instructions) to the agent
    extra_env: Mapping[str, str] | None = None
    ready_prompt: str | None = None  # wait for a pane line starting with this (refinery)
    ready_delay: float = 0.0  # else wait this long for the runtime to be ready (§3.5)
    startup_nudge: str | None = None  # typed once the agent is ready
    pane_died_hook: bool = False  # ``gt log crash`` hook (§3.9, polecats)
    pre_sync: bool = False  # ``git fetch`` + ``pull --rebase`` of the checkout first


def start_profile(identity: Identity, agent: AgentProgram, *, reason: Reason = Reason.KEEP,
                  ready_prompt: str | None = None) -> StartProfile:
    """The profile of ``identity``'s role; ``ready_prompt`` is the operator's override of
    the runtime's own prompt (``GT_READY_PROMPT``).

    >>> p = start_profile(Identity(Role.POLECAT, "gastown", "nux"),
    ...                   AgentProgram("claude", ("claude",)), reason=Reason.CRASH)
    >>> (p.beacon, p.pane_died_hook, p.pre_sync, p.theme.label)
    (False, True, True, '😺 gastown/nux')
    """
    role = identity.role
    pre_sync = role in PRE_SYNC_ROLES
    if role is Role.MAYOR:
        return StartProfile(theme=MAYOR_THEME)
    if role is Role.DEACON:
        return StartProfile(theme=DEACON_THEME)
    if role is Role.BOOT:
        return StartProfile()
    if role is Role.REFINERY:  # the one role Gas Town waits for until ready (§3.5)
        prompt = ready_prompt or agent.ready_prompt
        return StartProfile(theme=rig_theme(identity), ready_prompt=prompt,
                            ready_delay=0.0 if prompt else agent.ready_delay,
                            startup_nudge=None if agent.name == "claude" else STARTUP_FALLBACK,
                            pre_sync=pre_sync)
    if role is Role.POLECAT:
        return StartProfile(theme=rig_theme(identity), beacon=reason is not Reason.CRASH,
                            pane_died_hook=True, pre_sync=pre_sync)
    return StartProfile(theme=rig_theme(identity), pre_sync=pre_sync)


def pane_died_hook(identity: Identity) -> str:
    """The ``gt log crash`` hook command of a polecat's window (§3.9)."""
    agent = f"{identity.rig}/{identity.name}".replace("'", "'\\''")
    session = identity.session.replace("'", "'\\''")
    return (f"run-shell \"gt log crash --agent '{agent}' --session '{session}' "
            "--exit-code #{pane_dead_status}\"")
