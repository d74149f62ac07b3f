"""Facts read through a tool (``bd show`` of a rig bead, ``gt mail inbox``), kept until
their source changes.

Every ``bd``/``gt`` call is a process, and against a real Dolt store it costs 0.2-6.7 s;
a service woken by a tmux event should not pay that for facts that did not change. A fact
is kept with the look of its source taken *before* it was read (``town.stores.signature``)
and reused only while the source still looks the same and for at most ``max_age`` seconds;
when the source cannot be seen (None: a Dolt server) it is read every time. A failed read
is never kept, and drops what was kept: unknown is unknown, never an old answer. A kept
fact is exactly what a read would have returned, so it may only ever *withhold* an action
that a fresh read would withhold too; nothing is killed on a kept fact that a fresh one
would not kill.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Cached(Generic[T]):
    """One fact and the look of its source when it was read.

    >>> calls = []
    >>> fact: Cached[int] = Cached(max_age=300)
    >>> fact.get(("v1",), lambda: calls.append(1) or 7), fact.get(("v1",), lambda: 8)
    (7, 7)
    >>> fact.get(("v2",), lambda: 9), fact.get(None, lambda: 10), fact.get(None, lambda: 11)
    (9, 10, 11)
    """

    def __init__(self, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        """``max_age``: the longest the fact is reused even when its source looks
        unchanged (``GT_FACT_MAX_AGE``; a write may leave no trace in the files looked at).
        """
        self.max_age = max_age
        self._clock = clock
        self._source: Hashable | None = None
        self._value: T | None = None
        self._at = 0.0
        self.reused = False  # whether the last get() answered without reading

    def get(self, source: Hashable | None, read: Callable[[], T]) -> T:
        """The kept fact when ``source`` is the look it was read at and it is young
        enough; otherwise ``read()`` (its exception propagates, nothing is kept)."""
        now = self._clock()
        if source is not None and self._source == source and now - self._at < self.max_age:
            self.reused = True
            return self._value  # type: ignore[return-value]
        self.forget()
        value = read()
        if source is not None:
            self._source, self._value, self._at = source, value, now
        return value

    def forget(self) -> None:
        """Read again next time (``systemctl reload``, or the read failed)."""
        self._source, self._value, self.reused = None, None, False
