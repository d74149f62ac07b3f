"""Errors stay contained: one agent's or one rig's failure never ends the pass.

An expected failure (a tool failed, a file is damaged, a setting is unusable) is logged as
one line and recorded for ``--once``; anything else is a bug, logged with its traceback the
first time it is seen and as one line after that. The pass goes on with the next agent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from gastown_units.errors import GastownError
from gastown_units.runtime.loop import Context, Stopping

log = logging.getLogger(__name__)

EXPECTED = (GastownError, OSError, ValueError)
_seen: set[str] = set()


def report(what: str, exc: BaseException, where: Mapping[str, str] | None = None) -> str:
    """Log ``exc`` as the failure of ``what``; returns the one-line text."""
    text = f"{what} failed: {exc}"
    if isinstance(exc, EXPECTED):
        log.error("%s", text, extra=where)
        return text
    key = f"{type(exc).__name__}: {exc}"
    if key in _seen:
        log.error("%s (%s, traceback logged before)", text, type(exc).__name__, extra=where)
    else:
        _seen.add(key)
        log.error("%s (%s)", text, type(exc).__name__, exc_info=exc, extra=where)
    return text


@contextmanager
def contained(what: str, ctx: Context, where: Mapping[str, str] | None = None
              ) -> Iterator[None]:
    """Run one agent's or rig's step; a failure is reported and the pass goes on."""
    try:
        yield
    except Stopping:
        raise
    except Exception as exc:  # noqa: BLE001 - containment is the point
        ctx.failed(report(what, exc, where))
