"""A split town: the town's agents run on another tmux server than the one we use.

Gas Town ([J]) runs its agents on the owner's default tmux server; our services use the
one ``GT_TMUX_SOCKET`` names. When the two differ, every keeper sees no agent on its
server and starts a second copy in the same worktree. So, just before the actor starts an
agent (starts are rare; the idle path costs nothing), :class:`SplitTownGuard` asks the
user's *other* tmux servers — every socket in the tmux socket directory
(``$TMUX_TMPDIR`` or ``/tmp``, then ``tmux-<uid>/``) except ours, and ``default`` if that
path exists (or cannot be looked at) —
whether the session runs there: one ``list-sessions`` per server, ``-N`` and ``-S PATH``,
which never start a server. A stale socket (no server) says so at once and counts as absent.

Rules of evidence:

- The session runs there and its start directory (``session_path``) is in this town, or
  is unknown: it is the town's agent — start nothing (:class:`Sighting`, ``runs``). A
  session of that name whose directory is positively elsewhere belongs to another town.
- The server cannot be asked (timeout, an unexpected error): it *may* run the agent, and a
  second copy destroys work, so the start is held — but for at most :data:`UNKNOWN_HOLD`
  from the first unanswered question to that server (remembered in
  ``daemon/units/split-town.json`` across processes, since polecat-health is a oneshot).
  After that the server is ignored with one warning: one unreadable socket must not leave
  the town unsupervised forever. Any answer (sessions, or "no server" once the socket
  file is stale or gone) resets the clock.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from gastown_units.errors import GastownError, ToolError
from gastown_units.ports import runner
from gastown_units.town.jsonfile import read_json_or_set_aside, write_json_atomic

log = logging.getLogger(__name__)

UNKNOWN_HOLD = 600.0  # seconds a start waits for a foreign server that does not answer
PROBE_TIMEOUT = 3.0  # seconds one foreign server may take to list its sessions
_SEP = "\t"
_NO_SERVER = ("no server running", "error connecting to", "server exited unexpectedly")
_NO_SESSIONS = ("no sessions", "no current target")


class Elsewhere(GastownError):
    """The agent runs, or may run, on another tmux server: it was not started here."""

    def __init__(self, sighting: Sighting) -> None:
        super().__init__(sighting.line())
        self.sighting = sighting


@dataclass(frozen=True)
class Sighting:
    """Where the session was seen (``runs``) or could not be ruled out (``unknown``)."""

    session: str
    server: Path
    ours: str  # how our server is configured, for the message
    unknown: str = ""  # why the server could not be asked; empty: seen running there

    def line(self) -> str:
        """The one line for the journal and ``STATUS=``.

        >>> Sighting("hq-deacon", Path("/tmp/tmux-1000/default"),  # doctest: +NORMALIZE_WHITESPACE
        ...          "the configured socket 'gastown' (GT_TMUX_SOCKET)").line()
        "split town: hq-deacon already runs on tmux server /tmp/tmux-1000/default, not on
        the configured socket 'gastown' (GT_TMUX_SOCKET); starting nothing there - point
        GT_TMUX_SOCKET at the server gt uses (unset it for the default server)"
        """
        fix = ("unset it for the default server" if self.server.name == "default"
               else f"GT_TMUX_SOCKET={self.server.name}")
        if self.unknown:
            return (f"split town?: tmux server {self.server} does not answer "
                    f"({self.unknown}); it may run {self.session}, so it is not started on "
                    f"{self.ours} for up to {UNKNOWN_HOLD / 60:g} min")
        return (f"split town: {self.session} already runs on tmux server {self.server}, "
                f"not on {self.ours}; starting nothing there - point GT_TMUX_SOCKET at "
                f"the server gt uses ({fix})")


@dataclass(frozen=True)
class Reply:
    """A foreign server's answer: its sessions (name -> start directory), none, or unknown."""

    sessions: Mapping[str, str] | None = None  # None: no server (or unknown, see error)
    error: str = ""  # non-empty: the server could not be asked


def socket_dir(environ: Mapping[str, str], uid: int) -> Path:
    """Where tmux keeps this user's sockets (tmux: ``$TMUX_TMPDIR`` or ``/tmp``).

    >>> socket_dir({"TMUX_TMPDIR": "/run/x"}, 1000), socket_dir({}, 0)
    (PosixPath('/run/x/tmux-1000'), PosixPath('/tmp/tmux-0'))
    """
    return Path(environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{uid}"


def foreign_servers(directory: Path, ours: str | None) -> list[Path]:
    """Every socket in ``directory`` but ours (``None``: default), and ``default`` unless
    there is no such file: no server listens at a path that does not exist, and asking
    would cost a process on the way to every start (an unreadable directory: asked)."""
    mine = ours or "default"
    found: set[Path] = set()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        entries = []  # unreadable or absent: the default server is still asked
    for entry in entries:
        try:
            if entry.name != mine and stat.S_ISSOCK(entry.stat(follow_symlinks=False).st_mode):
                found.add(Path(entry.path))
        except OSError:
            continue
    if mine != "default" and _may_exist(directory / "default"):
        found.add(directory / "default")
    return sorted(found)


def _may_exist(path: Path) -> bool:
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True  # cannot tell (permissions): ask
    return True


def parse_sessions(text: str) -> dict[str, str]:
    """``list-sessions -F '#{session_name}<TAB>#{session_path}'`` -> name: path.

    >>> parse_sessions("hq-deacon\\t/gt/deacon\\nodd\\n")
    {'hq-deacon': '/gt/deacon', 'odd': ''}
    """
    sessions = {}
    for line in text.splitlines():
        name, _, path = line.partition(_SEP)
        if name:
            sessions[name] = path
    return sessions


def in_town(session_path: str, town_root: Path) -> bool:
    """Whether a session's start directory is in the town; unknown (empty) counts as yes.

    Compared as written and resolved, so a town reached through a symlink still matches.

    >>> in_town("/gt/deacon", Path("/gt")), in_town("", Path("/gt"))
    (True, True)
    >>> in_town("/other/deacon", Path("/gt")), in_town("/gtx", Path("/gt"))
    (False, False)
    """
    if not session_path:
        return True
    try:
        roots = {town_root, Path(os.path.realpath(town_root))}
        paths = {Path(session_path), Path(os.path.realpath(session_path))}
    except (ValueError, UnicodeError, OSError):  # NUL, lone surrogates: unknown, so yes
        return True
    return any(p == r or r in p.parents for p in paths for r in roots)


class SplitTownGuard:
    """Asks the user's other tmux servers whether an agent runs there (see module doc)."""

    def __init__(self, *, binary: str, socket: str | None, town_root: Path,
                 state_file: Path | None, timeout: float = PROBE_TIMEOUT,
                 environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.binary = binary
        self.socket = socket
        self.town_root = town_root
        self.state_file = state_file
        self.timeout = timeout
        self.directory = socket_dir(os.environ if environ is None else environ, os.getuid())
        self.clock = clock
        self._unknown_since: dict[str, float] = {}  # in case the state file is unusable
        self._gave_up: set[str] = set()

    def ours(self) -> str:
        if self.socket:
            return f"the configured socket {self.socket!r} (GT_TMUX_SOCKET)"
        return f"the default server {self.directory / 'default'} (GT_TMUX_SOCKET unset)"

    def ask(self, server: Path) -> Reply:
        """One ``list-sessions`` on ``server``; never starts a server."""
        argv = [self.binary, "-N", "-S", str(server), "list-sessions", "-F",
                f"#{{session_name}}{_SEP}#{{session_path}}"]
        try:
            result = runner.run(argv, timeout=self.timeout)
        except ToolError as exc:
            return Reply(error=str(exc))
        if result.ok:
            return Reply(parse_sessions(result.stdout))
        text = (result.stderr + result.stdout).lower()
        if any(n in text for n in _NO_SESSIONS):
            return Reply({})
        if any(n in text for n in _NO_SERVER):
            return Reply()
        return Reply(error=result.error_line())

    def check(self, session: str, progress: Callable[[], None] = lambda: None
              ) -> Sighting | None:
        """The evidence that ``session`` runs on another server of this user, or None."""
        return self.check_many([session], progress).get(session)

    def check_many(self, sessions: Collection[str],
                   progress: Callable[[], None] = lambda: None) -> dict[str, Sighting]:
        """:meth:`check` for several sessions, asking each foreign server once."""
        found: dict[str, Sighting] = {}
        if not sessions:
            return found
        recorded = self._load()
        since: dict[str, float] = {}  # servers unanswered now (others are forgotten)
        held: Sighting | None = None
        for server in foreign_servers(self.directory, self.socket):
            progress()
            reply = self.ask(server)
            if not reply.error:
                listed = reply.sessions or {}
                for name in sessions:
                    if name in listed and in_town(listed[name], self.town_root):
                        found.setdefault(name, Sighting(name, server, self.ours()))
                    elif name in listed:
                        log.debug("%s on %s belongs to another town (%s)", name, server,
                                  listed[name])
                continue
            key = str(server)
            now = self.clock()
            first = min(recorded.get(key, now), self._unknown_since.setdefault(key, now))
            since[key] = first
            if now - first < UNKNOWN_HOLD:
                held = held or Sighting("", server, self.ours(), reply.error)
            elif key not in self._gave_up:
                self._gave_up.add(key)
                log.warning("tmux server %s has not answered for %g min (%s): no longer "
                            "waiting for it before starting agents", server,
                            UNKNOWN_HOLD / 60, reply.error)
        self._unknown_since = {k: v for k, v in self._unknown_since.items() if k in since}
        if since != recorded:
            self._save(since)
        if held is not None:
            for name in sessions:
                found.setdefault(name, replace(held, session=name))
        return found

    def _load(self) -> dict[str, float]:
        if self.state_file is None or not self.state_file.exists():
            return {}
        data = read_json_or_set_aside(self.state_file)
        raw = data.get("unknown_since") if isinstance(data, dict) else None
        if not isinstance(raw, dict):
            return {}
        return {str(k): float(v) for k, v in raw.items()
                if isinstance(v, int | float) and not isinstance(v, bool)}

    def _save(self, since: dict[str, float]) -> None:
        if self.state_file is None:
            return
        try:
            write_json_atomic(self.state_file, {"unknown_since": since}, mode=0o644)
        except OSError as exc:
            log.debug("cannot write %s: %s", self.state_file, exc)
