"""Which ready issue the Witness slings next, and when a failed sling may be tried again.

Pure: the Witness gathers ``bd ready`` of the rig's database and its live polecats, this
module decides (gastown.md §6.7, the MVP auto-spawner). ``bd ready`` is the truth about
what still needs a polecat: a sling that worked hooks the issue, which leaves the ready
list. The book only keeps a failing sling from being retried at once, so one broken issue
never starves the rest of the rig.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SKIP_TYPES = frozenset({"merge-request", "epic"})  # the MVP's ReadyIssue filter
AGENT_LABEL = "gt:agent"  # agents auto-created as tasks show up in bd ready (beads.md §5.1)
BACKOFF_CAP = 3600.0
FORGET_AFTER = 24 * 3600.0  # an entry nobody has looked at for a day is dropped


@dataclass(frozen=True)
class Attempt:
    """The last sling of one issue: how many in a row failed, and when it started."""

    failures: int
    last: float
    ok: bool

    def to_json(self) -> dict[str, Any]:
        return {"failures": self.failures, "last": self.last, "ok": self.ok}

    @classmethod
    def from_json(cls, raw: object) -> Attempt | None:
        if not isinstance(raw, dict):
            return None
        failures, last, ok = raw.get("failures"), raw.get("last"), raw.get("ok")
        if (isinstance(failures, int) and not isinstance(failures, bool)
                and 0 <= failures <= 1000 and isinstance(last, (int, float))
                and not isinstance(last, bool) and isinstance(ok, bool)):
            try:
                when = float(last)
            except OverflowError:
                return None
            return cls(failures, when, ok) if math.isfinite(when) else None
        return None


def retry_after(failures: int, base: float) -> float:
    """Seconds a sling that failed ``failures`` times in a row waits: doubling, capped.

    >>> [retry_after(n, 60) for n in (1, 2, 3)]
    [60.0, 120.0, 240.0]
    >>> retry_after(30, 60)
    3600.0
    """
    return float(min(BACKOFF_CAP, base * 2 ** min(max(failures - 1, 0), 20)))


def load_book(raw: object) -> dict[str, Attempt]:
    """The persisted book; malformed entries are dropped (they only delay a retry)."""
    if not isinstance(raw, dict):
        return {}
    book = {}
    for issue, entry in raw.items():
        attempt = Attempt.from_json(entry)
        if isinstance(issue, str) and attempt is not None:
            book[issue] = attempt
    return book


def dump_book(book: Mapping[str, Attempt]) -> dict[str, Any]:
    return {issue: attempt.to_json() for issue, attempt in sorted(book.items())}


def candidates(ready: Iterable[Mapping[str, Any]], book: Mapping[str, Attempt], now: float,
               *, backoff: float, prefix: str | None) -> list[str]:
    """Ready issues that may be slung now, in ``bd ready``'s order.

    Skipped: merge requests and epics, agent beads (labelled ``gt:agent``), IDs without the
    configured prefix, and issues whose last sling failed less than its backoff ago or
    worked less than a backoff ago (the polecat may not have hooked it yet).
    """
    todo = []
    for issue in ready:
        iid = issue.get("id")
        if not isinstance(iid, str) or not iid or iid in todo:
            continue
        labels, kind = issue.get("labels"), issue.get("issue_type", "task")
        if not isinstance(kind, str) or kind in SKIP_TYPES or kind == "agent":
            continue
        if isinstance(labels, list) and AGENT_LABEL in labels:
            continue
        if prefix and not iid.startswith(prefix):
            continue
        last = book.get(iid)
        if last is not None:
            wait = retry_after(last.failures, backoff) if not last.ok else backoff
            if now - last.last < wait:
                continue
        todo.append(iid)
    return todo


def record(book: dict[str, Attempt], issue: str, *, ok: bool, started: float) -> Attempt:
    """Book the outcome of one sling; returns the new entry."""
    before = book.get(issue)
    failures = 0 if ok else (before.failures if before and not before.ok else 0) + 1
    book[issue] = Attempt(failures, started, ok)
    return book[issue]


def forget_old(book: dict[str, Attempt], now: float) -> None:
    """Drop entries older than a day: the book stays small whatever the rig's history."""
    for issue in [i for i, a in book.items() if now - a.last > FORGET_AFTER]:
        del book[issue]
