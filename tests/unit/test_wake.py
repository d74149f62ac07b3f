"""Event wakes survive a restart of the tmux host unit (issue 8 item 7).

The unit's runtime directory is removed and made anew on a restart; the watch must follow
it to the new directory, or a long-running service never wakes on tmux events again.
"""

from __future__ import annotations

import select
import shutil
from pathlib import Path

from gastown_units.runtime.wake import EventWatch


def woken(watch: EventWatch, timeout: float = 2.0) -> bool:
    assert watch.fd is not None
    ready, _, _ = select.select([watch.fd], [], [], timeout)
    watch.drain()
    return bool(ready)


def test_the_watch_follows_a_recreated_directory(tmp_path: Path) -> None:
    run = tmp_path / "gastown-tmux"
    run.mkdir()
    event = run / "events"
    event.touch()
    watch = EventWatch(event)
    try:
        event.write_text("x")
        assert woken(watch)
        shutil.rmtree(run)  # gastown-tmux.service stops: RuntimeDirectory removed
        woken(watch, 0.2)  # the removal itself may wake us; either way
        watch.arm()  # no directory: nothing to watch, no error
        run.mkdir()  # ... and starts again
        watch.arm()  # what the service loop does before every wait
        event.write_text("y")
        assert woken(watch), "no wake after the tmux host restarted"
    finally:
        watch.close()
