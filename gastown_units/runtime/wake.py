"""Wake a service when tmux reports a closed session, instead of waiting for its interval.

``gastown-tmux.service`` sets global tmux hooks that rewrite an event file whenever a
session closes or a pane dies. Long-running services watch that file's directory with
inotify, so a dead agent is noticed at once; the interval stays as the safety net. Where
inotify or the directory is unavailable the service simply polls.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF
         | IN_MOVE_SELF)


class EventWatch:
    """An inotify watch on the event file's directory; ``fd`` is None when unavailable."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.fd: int | None = None
        self._watching = False
        self._wd = -1
        self._watched: tuple[int, int] | None = None  # (st_dev, st_ino) of the directory
        self._libc: ctypes.CDLL | None = None
        if path is None:
            return
        try:
            self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6",
                                     use_errno=True)
            fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        except (OSError, AttributeError) as exc:
            log.info("no inotify (%s): waking by interval only", exc)
            return
        if fd < 0:
            log.info("inotify_init1 failed (errno %d): waking by interval only",
                     ctypes.get_errno())
            return
        self.fd = fd
        self.arm()

    def arm(self) -> None:
        """Watch the directory once it exists (the tmux unit creates it); cheap to repeat.

        A restart of the tmux unit removes and recreates the directory: the old watch is
        then dropped and the new directory watched (one ``stat`` per call).
        """
        if self.fd is None or self.path is None or self._libc is None:
            return
        try:
            st = os.stat(self.path.parent)
        except OSError:
            self._forget()
            return
        if self._watching and self._watched == (st.st_dev, st.st_ino):
            return
        self._forget()
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(self.path.parent), _MASK)
        if wd >= 0:
            self._wd, self._watching, self._watched = wd, True, (st.st_dev, st.st_ino)
            log.debug("watching %s for tmux events", self.path)

    def _forget(self) -> None:
        if self._watching and self.fd is not None and self._libc is not None:
            self._libc.inotify_rm_watch(self.fd, self._wd)  # fails harmlessly if gone
        self._watching, self._watched, self._wd = False, None, -1

    def drain(self) -> None:
        """Read pending events (their content does not matter: any means "look now")."""
        if self.fd is None:
            return
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass
        except OSError:  # the watched directory went away (tmux unit stopped)
            self._watching = False

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
