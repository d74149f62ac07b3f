"""``gt mail`` (contract gastown.md §5): inbox, delete (claim), send.

Every argv element from data goes through :mod:`gastown_units.ports.argv` or after ``--``:
addresses and message IDs are checked; a subject and a body are values of ``-s``/``-m``
(the option takes the next word whatever it starts with) and only need to be text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gastown_units.errors import ToolError
from gastown_units.ports import runner
from gastown_units.ports.argv import checked_address, checked_bead_id, text_arg
from gastown_units.ports.gt import GtCommand
from gastown_units.town.jsonfile import parse_time


@dataclass(frozen=True)
class Message:
    id: str
    sender: str
    to: str
    subject: str
    body: str
    timestamp: datetime | None
    read: bool


def parse_inbox(stdout: str) -> list[Message]:
    """``gt mail inbox --json``: an array, ``null`` or nothing (all mean "empty")."""
    text = stdout.strip()
    if not text:
        return []
    try:
        data: Any = json.loads(text)
    except RecursionError:
        raise ValueError("inbox JSON nested too deeply") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise ValueError("inbox is not a JSON array")
    return [_message(item) for item in data if isinstance(item, dict) and item.get("id")]


def _message(item: dict[str, Any]) -> Message:
    return Message(
        id=str(item["id"]),
        sender=str(item.get("from") or ""),
        to=str(item.get("to") or ""),
        subject=str(item.get("subject") or ""),
        body=str(item.get("body") or ""),
        timestamp=parse_time(item.get("timestamp")),
        read=bool(item.get("read")),
    )


class Mail(GtCommand):
    """The ``gt mail`` port. ``env`` sets the sender identity (``GT_ROLE`` …, §5.3)."""

    def _run(self, *args: str) -> runner.Result:
        return self.run("mail", *args)

    def inbox(self, identity: str) -> list[Message]:
        out = self._run("inbox", "--identity", checked_address(identity, "identity"),
                        "--json").stdout
        try:
            return parse_inbox(out)
        except (ValueError, json.JSONDecodeError):
            raise ToolError(f"gt mail inbox: unreadable output: {out[:80]!r}") from None

    def delete(self, message_id: str) -> None:
        self._run("delete", checked_bead_id(message_id, "message ID"))

    def send(self, to: str, subject: str, body: str) -> None:
        self._run("send", checked_address(to), "-s", text_arg(subject, "subject"),
                  "-m", text_arg(body, "body"))
