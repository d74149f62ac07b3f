"""Wake a service when tmux reports a closed session, instead of waiting for its interval.

``gastown-tmux.service`` sets global tmux hooks that, whenever a session closes or a pane
dies, write a marker named after the session beside the event file and create the pending
marker. Long-running services watch that directory with inotify, and each wakes only for
the sessions of its own agents (``wakes_for``), so a dead agent is noticed at once and a
town's other services stay asleep; the interval stays as the safety net. Where inotify or
the directory is unavailable the service simply polls.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes

log = logging.getLogger(__name__)

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_IGNORED = 0x8000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF
         | IN_MOVE_SELF)


# The global tmux hooks gastown-tmux.service sets (``gastown-units tmux-ready``), in our own
# slot of tmux's hook arrays so that others' hooks are left alone.
EVENT_HOOKS = ("session-closed", "pane-died")
EVENT_HOOK_INDEX = 77


def pending_marker(event_file: Path) -> Path:
    """The file each hook creates beside the event file: it stays until a polecat-health
    sweep takes it (``PathExists=`` in the .path unit), so an event during a sweep starts
    the next one even in the milliseconds after the sweep's last look.

    >>> pending_marker(Path("/run/gastown-tmux/events"))
    PosixPath('/run/gastown-tmux/events.pending')
    """
    return event_file.with_name(event_file.name + ".pending")


# Where each hook finds the name of the session its event is about (tmux 3.3a): a
# session-closed hook knows it only as hook_session_name (its session_name is some other,
# live session), a pane-died hook only as session_name (hook_session_name is empty).
HOOK_SESSION = {"session-closed": "hook_session_name", "pane-died": "session_name"}
CLOSED = ".closed."  # the hooks' per-session marker: <event file><CLOSED><session token>
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# The tmux format of the token: tmux itself replaces every other character, so nothing
# of a session's name reaches the shell but letters, digits, '_' and '-'.
_TOKEN_FORMAT = "#{s/[^A-Za-z0-9_-]/_/:%s}"


def session_token(name: str) -> str:
    """A session's name as the hooks spell it in their marker's file name.

    >>> session_token("gt-gastown-witness"), session_token("a b;$(x)")
    ('gt-gastown-witness', 'a_b___x_')
    """
    return _UNSAFE.sub("_", name)


def hook_command(event_file: Path, hook: str) -> str:
    """The tmux command of the event hook ``hook``: write the closed session's marker
    beside the event file (long-running services watch the directory, and each wakes only
    for its own agents' sessions), then create the pending marker (the oneshot's trigger).

    >>> for part in hook_command(Path("/run/gastown-tmux/events"), "pane-died").split("; "):
    ...     print(part)
    run-shell -b ': > /run/gastown-tmux/events.closed.#{s/[^A-Za-z0-9_-]/_/:session_name}
    : > /run/gastown-tmux/events.pending'
    """
    closed = _literal(shlex.quote(str(event_file) + CLOSED)) + _TOKEN_FORMAT % HOOK_SESSION[hook]
    marker = _literal(shlex.quote(str(pending_marker(event_file))))
    return f"run-shell -b {shlex.quote(f': > {closed}; : > {marker}')}"


def _literal(text: str) -> str:
    """``text`` as a literal in a tmux format (run-shell expands its command)."""
    return text.replace("#", "##")


def closed_sessions(event_file: Path, names: set[str]) -> frozenset[str] | None:
    """The session tokens that entries ``names`` of the event directory report closed, or
    None when any session may have closed: the event file itself changed (the hooks of an
    older version, still set on a tmux host that kept running across an upgrade), the
    directory did (``""``; an overflow), or a marker names no session.

    >>> sorted(closed_sessions(Path("/r/events"), {"events.closed.gt-a", "events.pending"}))
    ['gt-a']
    >>> closed_sessions(Path("/r/events"), {"events"}) is None
    True
    >>> closed_sessions(Path("/r/events"), {"events.pending"})
    frozenset()
    """
    prefix = event_file.name + CLOSED
    tokens = set()
    for name in names:
        if name in ("", event_file.name):
            return None
        if name.startswith(prefix):
            token = name[len(prefix):]
            if not token:
                return None
            tokens.add(token)
    return frozenset(tokens)


def _last_errno() -> int:
    import ctypes

    return ctypes.get_errno()


def inotify(what: str) -> tuple[ctypes.CDLL, int] | None:
    """libc and a new non-blocking inotify descriptor, or None (logged: ``what`` is then
    checked at the interval only)."""
    import ctypes  # here: a polecat sweep (--once) watches nothing and needs none
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    except (OSError, AttributeError) as exc:
        log.info("no inotify (%s): %s checked at the interval only", exc, what)
        return None
    if fd < 0:
        log.info("inotify_init1 failed (errno %d): %s checked at the interval only",
                 ctypes.get_errno(), what)
        return None
    return libc, fd


_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name


def ignored_watches(data: bytes) -> set[int]:
    """Watch descriptors that ``IN_IGNORED`` events in ``data`` report as ended.

    >>> ignored_watches(_EVENT.pack(1, IN_MODIFY, 0, 0) + _EVENT.pack(2, IN_IGNORED, 0, 0))
    {2}
    """
    ended, offset = set(), 0
    while offset + _EVENT.size <= len(data):
        wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
        if mask & IN_IGNORED:
            ended.add(wd)
        offset += _EVENT.size + length
    return ended


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
        found = inotify("tmux events")
        if found is None:
            return
        self._libc, self.fd = found
        self.arm()  # the first pass runs anyway: nothing to report

    def arm(self) -> bool:
        """Watch the directory once it exists (the tmux unit creates it); cheap to repeat.

        A restart of the tmux unit removes and recreates the directory: the old watch is
        then dropped and the new directory watched (one ``stat`` per call). True when a
        watch was newly set after the first attempt (in ``__init__``): the tmux host
        (re)started while we were not watching, so its events may have been missed and
        the caller should look now.
        """
        if self.fd is None or self.path is None or self._libc is None:
            return False
        try:
            st = os.stat(self.path.parent)
        except OSError:
            self._forget()
            return False
        if self._watching and self._watched == (st.st_dev, st.st_ino):
            return False
        self._forget()
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(self.path.parent), _MASK)
        if wd < 0:
            return False
        self._wd, self._watching, self._watched = wd, True, (st.st_dev, st.st_ino)
        log.debug("watching %s for tmux events", self.path)
        return True

    @property
    def waiting_for_directory(self) -> bool:
        """Inotify works but the directory is missing (tmux host down): poll for it."""
        return self.fd is not None and self.path is not None and not self._watching

    def _forget(self) -> None:
        if self._watching and self.fd is not None and self._libc is not None:
            self._libc.inotify_rm_watch(self.fd, self._wd)  # fails harmlessly if gone
        self._watching, self._watched, self._wd = False, None, -1

    def drain(self) -> frozenset[str] | None:
        """Read pending events: the tokens (:func:`session_token`) of the sessions they
        report closed, or None for "any session may have closed" (see
        :func:`closed_sessions`; also when the watch itself ended).

        The kernel ends a watch with ``IN_IGNORED`` when its directory is removed (the tmux
        unit stopped); the next :meth:`arm` then watches the new one even if it got the
        old inode number back.
        """
        if self.fd is None or self.path is None:
            return frozenset()
        names: set[str] = set()
        try:
            while chunk := os.read(self.fd, 4096):
                names |= names_in(chunk)
                if self._watching and self._wd in ignored_watches(chunk):
                    self._watching, self._watched, self._wd = False, None, -1
                    names.add("")
        except BlockingIOError:
            pass
        except OSError:  # the watched directory went away (tmux unit stopped)
            self._watching = False
            return None
        return closed_sessions(self.path, names)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


IN_MOVED_FROM = 0x040
IN_DELETE = 0x200
IN_Q_OVERFLOW = 0x4000
_UNLINK_MASK = IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF


def names_in(data: bytes) -> set[str]:
    """The file names that the inotify events in ``data`` report (``""``: the watched
    directory itself, or an overflow: anything may have happened).

    >>> name = b"daemon.lock".ljust(16, b"\\0")
    >>> sorted(names_in(_EVENT.pack(1, IN_DELETE, 0, 16) + name
    ...                 + _EVENT.pack(1, IN_Q_OVERFLOW, 0, 0)))
    ['', 'daemon.lock']
    """
    names, offset = set(), 0
    while offset + _EVENT.size <= len(data):
        _wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
        raw = data[offset + _EVENT.size:offset + _EVENT.size + length]
        names.add(os.fsdecode(raw.split(b"\0", 1)[0]))
        offset += _EVENT.size + length
    return names


class UnlinkWatch:
    """Wake when one file is unlinked, renamed away or replaced.

    An [L] ``gt down`` or ``gt daemon stop`` unlinks the ``daemon/daemon.lock`` we hold
    (gastown-2026.md §6.11); a ``gt up`` right after it finds no lock file and starts a
    real ``gt daemon run``, which wins the town. Waiting for the interval loses that race
    (``gt down && gt up``), so the loop watches the lock's directory and runs a pass, which
    re-takes the lock, as soon as the file goes. Only events naming the file count (the
    Deacon keeper rewrites ``daemon/state.json`` every pass); unavailable: ``fd`` None,
    the interval alone.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.fd: int | None = None
        if path is None:
            return
        found = inotify(str(path))
        if found is None:
            return
        libc, fd = found
        if libc.inotify_add_watch(fd, os.fsencode(path.parent), _UNLINK_MASK) < 0:
            log.info("cannot watch %s (errno %d): checked by interval only", path.parent,
                     _last_errno())
            os.close(fd)
            return
        self.fd = fd

    def drain(self) -> bool:
        """Read pending events; True when one may concern the file."""
        if self.fd is None or self.path is None:
            return False
        names: set[str] = set()
        try:
            while chunk := os.read(self.fd, 4096):
                names |= names_in(chunk)
        except BlockingIOError:
            pass
        except OSError:
            return True
        return bool(names & {self.path.name, ""})

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


IN_WATCHED = (IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
              | IN_DELETE_SELF | IN_MOVE_SELF)


@dataclass(frozen=True)
class Watched:
    """A directory whose entries wake a service when they change.

    ``names``: only these entries count (None: any, except those in ``ignore``). ``gap``:
    the pass this wakes starts no sooner than this many seconds after the last one ended,
    so that a burst of writes (a busy beads store) costs one pass, not one per write.
    """

    directory: Path
    names: frozenset[str] | None = None
    ignore: frozenset[str] = frozenset()
    gap: float = 1.0

    def counts(self, name: str) -> bool:
        """Whether a change of entry ``name`` ("" = the directory itself) counts.

        >>> w = Watched(Path("/t/mayor"), frozenset({"rigs.json"}))
        >>> w.counts("rigs.json"), w.counts(".rigs.json.tmp"), w.counts("")
        (True, False, True)
        """
        if not name:
            return True
        if self.names is not None:
            return name in self.names
        return name not in self.ignore


def parse_events(data: bytes) -> list[tuple[int, int, str]]:
    """``(wd, mask, name)`` of each inotify event in ``data``.

    >>> name = b"rigs.json".ljust(16, b"\\0")
    >>> parse_events(_EVENT.pack(3, IN_MOVED_TO, 0, 16) + name)
    [(3, 128, 'rigs.json')]
    """
    found, offset = [], 0
    while offset + _EVENT.size <= len(data):
        wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
        raw = data[offset + _EVENT.size:offset + _EVENT.size + length]
        found.append((wd, mask, os.fsdecode(raw.split(b"\0", 1)[0])))
        offset += _EVENT.size + length
    return found


class FileWatch:
    """Inotify watches on the directories a service's facts come from (the town's files,
    its beads stores): a change wakes the loop, so the interval is only the safety net.

    :meth:`update` is cheap to call after every pass (one ``stat`` per directory): it
    watches directories that appeared since (a rig parked for the first time, a new
    store) and re-watches those replaced. Where inotify is unavailable ``fd`` is None and
    the service simply runs at its interval.
    """

    def __init__(self) -> None:
        self.fd: int | None = None
        self._libc: ctypes.CDLL | None = None
        self._by_path: dict[Path, tuple[int, tuple[int, int]]] = {}  # path -> wd, (dev, ino)
        self._by_wd: dict[int, list[Watched]] = {}
        found = inotify("town files")
        if found is not None:
            self._libc, self.fd = found

    def update(self, watched: list[Watched]) -> None:
        """Watch exactly ``watched`` from now on (missing directories are skipped)."""
        if self.fd is None or self._libc is None:
            return
        wanted: dict[Path, list[Watched]] = {}
        for w in watched:
            wanted.setdefault(w.directory, []).append(w)
        for path in [p for p in self._by_path if p not in wanted]:
            self._drop(path)
        by_wd: dict[int, list[Watched]] = {}
        for path, entries in wanted.items():
            try:
                st = os.stat(path)
            except OSError:
                self._drop(path)
                continue
            known = self._by_path.get(path)
            if known is None or known[1] != (st.st_dev, st.st_ino):
                self._drop(path)
                wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), IN_WATCHED)
                if wd < 0:
                    continue
                self._by_path[path] = (wd, (st.st_dev, st.st_ino))
            by_wd.setdefault(self._by_path[path][0], []).extend(entries)
        self._by_wd = by_wd

    def _drop(self, path: Path) -> None:
        known = self._by_path.pop(path, None)
        if known is None or self.fd is None or self._libc is None:
            return
        if known[0] not in (wd for wd, _ in self._by_path.values()):
            self._libc.inotify_rm_watch(self.fd, known[0])  # fails harmlessly if gone

    def drain(self) -> float | None:
        """Read pending events; the smallest gap of those that count, or None."""
        if self.fd is None:
            return None
        gap: float | None = None
        try:
            while chunk := os.read(self.fd, 65536):
                for wd, mask, name in parse_events(chunk):
                    if mask & IN_Q_OVERFLOW:  # events lost: anything may have changed
                        hits = [w for ws in self._by_wd.values() for w in ws]
                    else:
                        hits = [w for w in self._by_wd.get(wd, []) if w.counts(name)]
                    if mask & IN_IGNORED:  # the directory went: update() re-watches it
                        self._forget_wd(wd)
                    for w in hits:
                        gap = w.gap if gap is None else min(gap, w.gap)
        except BlockingIOError:
            pass
        except OSError:
            return 0.0
        return gap

    def _forget_wd(self, wd: int) -> None:
        for path in [p for p, (w, _) in self._by_path.items() if w == wd]:
            del self._by_path[path]
        self._by_wd.pop(wd, None)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
