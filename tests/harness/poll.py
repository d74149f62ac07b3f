"""Polling with a deadline: the tests' only way to wait for something to happen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(predicate: Callable[[], T], *, timeout: float, what: str,
               interval: float = 0.1) -> T:
    """Return the first truthy value of ``predicate``; AssertionError after ``timeout``.

    An exception from the predicate counts as "not yet" (things may still be settling);
    the last one is chained to the AssertionError.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = predicate()
        except Exception as exc:  # noqa: BLE001 - a probe may fail while things settle
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            error = AssertionError(f"timed out after {timeout:g}s waiting for {what}; "
                                   f"last value: {last!r}")
            if isinstance(last, BaseException):
                raise error from last
            raise error
        time.sleep(interval)


def wait_gone(pid: int, timeout: float = 10) -> None:
    """Wait until process ``pid`` has exited (a zombie awaiting its reaper counts as gone)."""
    import psutil

    def gone() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
    poll_until(gone, timeout=timeout, what=f"PID {pid} to exit")
