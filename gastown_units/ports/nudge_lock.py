"""[L]'s nudge-queue lock (2026 §3.7, §8 row 24): who types into an agent holds it.

``gt nudge`` serialises delivery to a session with an flock on
``<town>/.runtime/nudge_queue/<session>/.lock``. Typing into the same pane at the same time
interleaves the two texts, so our nudges take the same lock, but only where the queue
directory exists (an [L] town that nudged this session): creating it would mark a [J] town
as [L] (§0.2).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from gastown_units.errors import ToolError
from gastown_units.ports.argv import checked_name
from gastown_units.town.layout import Town

_POLL = 0.05


def queue_dir(town: Town, session: str) -> Path:
    return town.root / ".runtime" / "nudge_queue" / checked_name("session", session)


@contextmanager
def nudge_lock(town: Town, session: str, *, timeout: float,
               progress: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the session's nudge lock for the block; ToolError when it stays taken."""
    directory = queue_dir(town, session)
    if not directory.is_dir():
        yield
        return
    try:
        fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ToolError(f"cannot open the nudge lock of {session}: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ToolError(f"the nudge queue of {session} stayed locked for "
                                    f"{timeout:g}s (gt nudge delivering): not typing "
                                    "into it") from None
                if progress is not None:
                    progress()
                time.sleep(_POLL)
        yield
    finally:
        os.close(fd)
