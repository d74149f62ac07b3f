"""The Witness's ladder for stuck polecats: nudge, then escalate, then wait for a human.

Pure decision logic; the Witness performs the step and persists the entry. A polecat is
stuck when none of its git or state files changed for ``threshold`` seconds (§6.7); a step
is taken at most every ``interval`` seconds, and any new activity resets the ladder.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any


class Step(Enum):
    NUDGE = 1
    ESCALATE = 2
    WAIT = 3  # and beyond: a human has to look


@dataclass(frozen=True)
class Entry:
    step: int  # last step taken
    activity: float  # the activity time that step was taken for
    at: float  # when the step was taken

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> Entry | None:
        if not isinstance(data, dict):
            return None
        try:
            entry = cls(int(data["step"]), float(data["activity"]), float(data["at"]))
        except (KeyError, TypeError, ValueError, OverflowError):
            return None
        valid = Step.NUDGE.value <= entry.step <= Step.WAIT.value
        return entry if valid and math.isfinite(entry.activity + entry.at) else None


def next_step(entry: Entry | None, activity: float, now: float, *, threshold: float,
              interval: float) -> Step | None:
    """The step to take now, or None (not stuck, or too soon after the last step)."""
    if now - activity < threshold:
        return None
    if entry is None or activity > entry.activity:
        return Step.NUDGE  # newly stuck, or stuck again after showing activity
    if entry.step >= Step.WAIT.value or now - entry.at < interval:
        return None
    return Step(entry.step + 1)


def is_reset(entry: Entry | None, activity: float, now: float, threshold: float) -> bool:
    """The ladder restarts once the polecat shows activity again."""
    return entry is not None and (activity > entry.activity or now - activity < threshold)
