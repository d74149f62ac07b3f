"""Pure pieces of lifecycle-mail: which mail is ours, what it asks for, whether it is too old.

Kept free of I/O so that the parsers can be fuzzed and the decisions tested without tmux
(contract gastown.md §5.4, §6.8, §1.9).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from gastown_units.town.identity import Role
from gastown_units.town.layout import Town

SUBJECT_PREFIX = "lifecycle:"


class Action(StrEnum):
    """What a LIFECYCLE request asks for; ``stop`` is read as ``shutdown``."""

    CYCLE = "cycle"
    RESTART = "restart"
    SHUTDOWN = "shutdown"

    @property
    def flag(self) -> str:
        """The state-file key that confirms the request in strict mode (§1.9)."""
        return f"requesting_{self.value}"


_JSON_ACTIONS = {"cycle": Action.CYCLE, "restart": Action.RESTART,
                 "shutdown": Action.SHUTDOWN, "stop": Action.SHUTDOWN}
_TEXT_ACTIONS = {"restart": Action.RESTART, "action: restart": Action.RESTART,
                 "shutdown": Action.SHUTDOWN, "action: shutdown": Action.SHUTDOWN,
                 "stop": Action.SHUTDOWN, "cycle": Action.CYCLE, "action: cycle": Action.CYCLE}


def is_lifecycle(subject: str) -> bool:
    """Gas Town's gate: the subject, lower-cased, starts with ``lifecycle:``."""
    return subject.strip().lower().startswith(SUBJECT_PREFIX)


def parse_action(body: str) -> Action:
    """The requested action: a JSON ``{"action": …}`` or one of the plain-text forms.

    Raises ValueError saying why the body is not understood (the message is then left
    alone, never guessed at).

    >>> parse_action('{"action": "stop"}'), parse_action("  Action: Cycle\\n")
    (<Action.SHUTDOWN: 'shutdown'>, <Action.CYCLE: 'cycle'>)
    """
    text = body.strip()
    data = _json_or_none(text)
    if isinstance(data, dict):
        return _json_action(data)
    found = _TEXT_ACTIONS.get(text.lower())
    if found is not None:
        return found
    if text.startswith("{"):
        raise ValueError("malformed JSON body")
    raise ValueError(f"body is not a lifecycle action: {_clip(text)!r}")


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return None


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _json_action(data: dict[str, Any]) -> Action:
    raw = data.get("action")
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("JSON body has no \"action\" string")
    found = _JSON_ACTIONS.get(raw.strip().lower())
    if found is None:
        raise ValueError(f"unknown action {_clip(raw)!r}")
    return found


@dataclass(frozen=True)
class TooOld:
    """Why a request is dropped unexecuted: ``expired`` (max age) or ``stale`` (session)."""

    kind: str
    detail: str


def too_old(sent: datetime | None, now: datetime, max_age: float,
            session_created: float | None) -> TooOld | None:
    """Is the request past its age limit, or older than the session it targets?

    A request older than the running session was written before the last (re)start and
    is already answered (seed: stale LIFECYCLE mail killed crew every 5 minutes). Without
    a timestamp nothing can be said: the request counts as fresh.
    """
    if sent is None:
        return None
    age = (now - sent).total_seconds()
    if age > max_age:
        return TooOld("expired", f"{age / 3600:.1f} h old (limit {max_age / 3600:g} h)")
    if session_created is not None and sent.timestamp() < session_created:
        return TooOld("stale", "sent before its target session was created")
    return None


class Verdict(StrEnum):
    """What lifecycle-mail does with one request."""

    LEAVE = "leave"  # not now: stays in the inbox (unreadable, unconfirmed, state unknown)
    DROP = "drop"  # deleted without acting (expired, or older than its target session)
    REFUSE = "refuse"  # claimed and deleted, agent left as it is (rig not operational)
    ACT = "act"  # claimed, then carried out


@dataclass(frozen=True)
class RequestFacts:
    """What is known about one request when it is decided (pure data)."""

    action: Action | None
    sender_known: bool
    sent: datetime | None
    now: datetime
    max_age: float
    session_created: float | None = None
    strict: bool = False
    confirmed: bool = False
    agent_ok: bool = True  # the agent of the requester's role resolves (restart needs it)
    rig_operational: bool = True
    rig_unknown: bool = False  # the rig's state could not be read (bd or wisp failed)
    rig_reason: str = ""  # why the rig is not operational


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    outcome: str  # for the status line and the logs
    old: TooOld | None = None


def decide(facts: RequestFacts) -> Decision:
    """Decide a request before anything is done; the same facts give the same answer.

    Unknown is not "drop": a request is deleted unexecuted only on positive knowledge
    (too old, or the rig is parked/docked); a tool failure leaves it for the next pass.

    >>> now = datetime(2026, 1, 25, 12, 0)
    >>> decide(RequestFacts(Action.CYCLE, True, now, now, 3600, rig_operational=False,
    ...                     rig_unknown=True)).outcome
    'left (rig state unknown)'
    """
    if facts.action is None:
        return Decision(Verdict.LEAVE, "left (unparseable)")
    if not facts.sender_known:
        return Decision(Verdict.LEAVE, "left (unknown sender)")
    old = too_old(facts.sent, facts.now, facts.max_age, facts.session_created)
    if old is not None:
        return Decision(Verdict.DROP, old.kind, old)
    if facts.strict and not facts.confirmed:
        return Decision(Verdict.LEAVE, "left (not confirmed)")
    if facts.action is Action.SHUTDOWN:
        return Decision(Verdict.ACT, "done")
    if not facts.agent_ok:
        return Decision(Verdict.LEAVE, "left (configuration problem)")
    if facts.rig_unknown:
        return Decision(Verdict.LEAVE, "left (rig state unknown)")
    if not facts.rig_operational:
        return Decision(Verdict.REFUSE, "refused (rig not operational)")
    return Decision(Verdict.ACT, "done")


def state_file(town: Town, role: Role, rig: str | None, workdir: Path) -> Path:
    """Where the agent's ``state.json`` lives ([D] ``identityToStateFile``, §1.9).

    ``workdir`` is the agent's working directory (crew, polecat and Boot use it).
    """
    if role is Role.MAYOR:
        return town.root / "mayor" / "state.json"
    if role is Role.DEACON:
        return town.deacon_dir / "state.json"
    if role in (Role.WITNESS, Role.REFINERY):
        return town.rig_dir(str(rig)) / str(role) / "state.json"
    return workdir / "state.json"


def confirmed(state: Any, action: Action) -> bool:
    """Strict mode: the agent itself set ``requesting_<action>: true``."""
    return isinstance(state, dict) and state.get(action.flag) is True


def without_request(state: dict[str, Any], action: Action) -> dict[str, Any]:
    """The state with ``requesting_<action>`` and ``requesting_time`` removed."""
    return {k: v for k, v in state.items() if k not in (action.flag, "requesting_time")}
