"""Conditions that persist are logged when they start and when they end, not every pass.

A tool missing, a rig parked, a file damaged, ``bd`` failing: a service meets such a
condition on every pass until someone repairs it. :class:`Conditions` logs a warning when a
condition starts (or its text changes) and one "resolved" line when it ends::

    conditions.set("gt", f"cannot read the witness inbox: {exc}")   # logged once
    conditions.clear("gt")                                           # "resolved", once

A oneshot (a sweep per run) keeps :attr:`Conditions.active` in a state file between runs
(:meth:`load`, :attr:`changed`), so that a condition is told once however many runs it lasts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping


class Conditions:
    """The conditions one service is in, by key; each is logged at its start and end."""

    def __init__(self, logger: logging.Logger, level: int = logging.WARNING) -> None:
        self.log = logger
        self.level = level
        self.active: dict[str, str] = {}
        self.changed = False  # since load(): the state file needs saving

    def load(self, saved: object) -> None:
        """Conditions told by an earlier run (a dict of texts; anything else: none)."""
        items = saved.items() if isinstance(saved, dict) else ()
        self.active = {str(k): v for k, v in items if isinstance(v, str)}
        self.changed = False

    def set(self, key: str, text: str, *, level: int | None = None,
            fields: Mapping[str, str] | None = None) -> bool:
        """The condition ``key`` holds (described by ``text``); True if this was news."""
        if self.active.get(key) == text:
            return False
        self.active[key] = text
        self.changed = True
        self.log.log(self.level if level is None else level, "%s", text, extra=fields)
        return True

    def clear(self, key: str, resolved: str | None = None, *,
              fields: Mapping[str, str] | None = None) -> bool:
        """The condition ``key`` no longer holds; True if it held (then "resolved" is logged)."""
        text = self.active.pop(key, None)
        if text is None:
            return False
        self.changed = True
        self.log.info("%s", resolved or f"resolved: {text}", extra=fields)
        return True

    def holds(self, key: str) -> bool:
        return key in self.active
