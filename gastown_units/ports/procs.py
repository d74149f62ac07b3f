"""Killing a pane's process tree (contract §3.8) with psutil: deepest first, TERM then KILL.

Pane processes are not our children, so we use psutil (which checks PID reuse) instead of
process groups we did not create.

psutil is imported on first use (20 ms): the polecat-health oneshot on the event path
restarts a polecat whose session is gone without ever needing it.

No argv at all here: a PID from tmux output is an ``int`` (``parse_panes``), never text.
The rule for ports that run programs: every argv element from data goes through
:mod:`gastown_units.ports.argv` or after ``--``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

log = logging.getLogger(__name__)


def process_tree(pid: int) -> list[psutil.Process]:
    """``pid`` and its descendants, deepest first; empty if ``pid`` is gone (or is no PID)."""
    import psutil

    if pid <= 0:
        return []
    try:
        root = psutil.Process(pid)
        children = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [*reversed(children), root]


def kill_tree(pid: int, *, grace: float = 2.0,
              progress: Callable[[], None] | None = None) -> int:
    """SIGTERM the tree of ``pid`` bottom-up, SIGKILL what is left after ``grace`` seconds.

    Returns how many processes were signalled. Processes that vanish meanwhile are fine.
    """
    import psutil

    procs = process_tree(pid)
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
        except psutil.AccessDenied:
            log.warning("no permission to signal PID %d (%s)", proc.pid, _name(proc))
    _, alive = psutil.wait_procs(procs, timeout=grace)
    if progress:
        progress()
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.kill()
    if alive:
        psutil.wait_procs(alive, timeout=grace)
    return len(procs)


def child_names(pid: int) -> list[str]:
    """Names of the direct children of ``pid`` (to see an agent behind a shell)."""
    import psutil

    if pid <= 0:
        return []
    try:
        return [_name(c) for c in psutil.Process(pid).children()]
    except psutil.NoSuchProcess:
        return []


def _name(proc: psutil.Process) -> str:
    import psutil

    try:
        return proc.name()
    except psutil.Error:
        return "?"
