"""tmux as the supervisors use it: a client only, never a server's parent.

Every call passes ``-N`` so that no command of ours can start a tmux server (the server
would fork inside our unit's cgroup and die with it, design rule 1); the server belongs to
``gastown-tmux.service``. Exact-match targets: ``=NAME`` for sessions and ``=NAME:`` for
panes (``send-keys -t =NAME`` fails on tmux 3.3a).

Calls go through :func:`runner.run` with a timeout, not through libtmux: no libtmux release
(0.21 … 0.62) can time out a tmux call, and a hung call must not outlive the watchdog.

Every argv element from data goes through :mod:`gastown_units.ports.argv` or after ``--``:
session names are checked names (they also sit behind ``-t``), and every free-standing
argument (text typed with ``send-keys -l``, a key, a command, an option or hook and its
value, a format) follows ``--``, which tmux 3.3a's getopt takes as the end of options
(checked against a private server), so a text starting with '-' is typed, not parsed.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gastown_units.errors import BadInput, GastownError, ToolError, ToolMissing
from gastown_units.ports import runner
from gastown_units.ports.argv import checked_name as _checked_name


def check_name(kind: str, name: str) -> str:
    """A checked session name (BadInput otherwise)."""
    return _checked_name(kind, name)

_SEP = "\t"
_DELTA_RE = re.compile(r"[+-]?[0-9]{1,4}")
_PANE_FORMAT = _SEP.join((
    "#{session_name}", "#{pane_pid}", "#{pane_current_command}", "#{pane_dead}",
    "#{session_created}", "#{session_attached}", "#{pane_id}",
))
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PANE_ID_RE = re.compile(r"%[0-9]{1,9}")
_NO_SERVER = ("no server running", "error connecting to", "server exited unexpectedly")
_NO_SESSION = ("can't find session", "session not found", "can't find pane",
               "can't find window", "no such session", "no current target")


class ServerDown(ToolError):
    """No tmux server is running on our socket (nothing we may start)."""


class SessionExists(ToolError):
    """``new-session`` found a session of that name (somebody started it meanwhile)."""


@dataclass(frozen=True)
class Pane:
    session: str
    pid: int
    command: str
    dead: bool
    created: float  # session creation time, epoch seconds
    attached: int
    pane_id: str = ""  # ``%N``: what [L]'s ``GT_PANE_ID`` names


@dataclass(frozen=True)
class Snapshot:
    """All panes of the server, from one ``list-panes -a`` call."""

    panes: tuple[Pane, ...] = ()
    sessions: frozenset[str] = field(default_factory=frozenset)

    def first_pane(self, session: str) -> Pane | None:
        return next((p for p in self.panes if p.session == session), None)

    def pane_by_id(self, session: str, pane_id: str) -> Pane | None:
        return next((p for p in self.panes if p.session == session and p.pane_id == pane_id),
                    None)


def parse_panes(text: str) -> Snapshot:
    """Parse ``list-panes -a -F`` output in :data:`_PANE_FORMAT`; skips malformed lines.

    >>> parse_panes("hq-deacon\\t42\\tnode\\t0\\t1700000000\\t0\\t%3\\n").panes[0].pane_id
    '%3'
    """
    panes = []
    for line in text.splitlines():
        parts = line.split(_SEP)
        if len(parts) != 7:
            continue
        name, pid, command, dead, created, attached, pane_id = parts
        try:
            panes.append(Pane(name, int(pid), command, dead == "1", float(created),
                              int(attached or 0), pane_id))
        except ValueError:
            continue
    return Snapshot(tuple(panes), frozenset(p.session for p in panes))


class Tmux:
    """A tmux client bound to one server (``-L socket`` or the user's default; or
    ``-S socket_path`` for an operator's command run as root on the owner's server)."""

    def __init__(self, *, binary: str = "tmux", socket: str | None = None,
                 timeout: float = 5.0, socket_path: Path | None = None) -> None:
        self.binary = binary
        self.socket = socket
        self.timeout = timeout
        self.socket_path = socket_path

    def argv(self, *args: str) -> list[str]:
        """The full argv for a tmux command (pure; used by tests and logs)."""
        base = [self.binary, "-N", "-u"]  # -u: UTF-8, as every Gas Town call (2026 §3.0)
        if self.socket_path is not None:
            base += ["-S", str(self.socket_path)]
        elif self.socket:
            base += ["-L", self.socket]
        return [*base, *args]

    def _run(self, *args: str, stdin: str | None = None) -> runner.Result:
        return self._call([_literal(a) for a in args], stdin=stdin)

    def _call(self, args: Sequence[str], stdin: str | None = None) -> runner.Result:
        result = runner.run(self.argv(*args), timeout=self.timeout, stdin=stdin)
        if not result.ok and _matches(result, _NO_SERVER):
            raise ServerDown(f"no tmux server{self._where()}: {result.error_line()}")
        return result

    def _check(self, *args: str) -> runner.Result:
        result = self._run(*args)
        if not result.ok:
            raise ToolError(f"tmux {args[0]} failed: {result.error_line()}")
        return result

    def _where(self) -> str:
        if self.socket_path is not None:
            return f" at {self.socket_path}"
        return f" on socket {self.socket!r}" if self.socket else " (default socket)"

    # --- reads ------------------------------------------------------------------------
    def version(self) -> str:
        return self._check("-V").stdout.strip()

    def check_installed(self) -> None:
        """ToolMissing when the tmux binary is not found: a look on PATH, no process
        (``tmux -V`` cost a process start on the polecat sweep's event path)."""
        if shutil.which(self.binary) is None:
            raise ToolMissing(f"{self.binary}: not found (is it installed and on PATH?)")

    def snapshot(self) -> Snapshot:
        """Every pane of the server. Raises ServerDown when there is no server."""
        result = self._run("list-panes", "-a", "-F", _PANE_FORMAT)
        if not result.ok and "no current target" in result.error_line():
            return Snapshot()  # tmux 3.3a says this for a server without sessions
        if not result.ok:
            raise ToolError(f"tmux list-panes failed: {result.error_line()}")
        return parse_panes(result.stdout)

    def server_started(self) -> float | None:
        """When the tmux server started (``#{start_time}``, its own clock), or None when
        it cannot be asked or answers no number: then nothing is known."""
        try:
            result = self._run("display-message", "-p", "#{start_time}")
        except GastownError:  # no server, a timeout: unknown
            return None
        text = result.stdout.strip() if result.ok else ""
        return float(text) if text.isdigit() else None

    def has_session(self, name: str) -> bool:
        result = self._run("has-session", "-t", f"={check_name('session', name)}")
        if result.ok:
            return True
        if _matches(result, _NO_SESSION):
            return False
        raise ToolError(f"tmux has-session failed: {result.error_line()}")

    def capture(self, name: str, lines: int = 30) -> str:
        return self._check("capture-pane", "-p", "-t", f"={check_name('session', name)}:",
                           "-S", f"-{int(lines)}").stdout

    def display(self, name: str, fmt: str) -> str:
        return self._check("display-message", "-p", "-t", f"={check_name('session', name)}:",
                           "--", fmt).stdout.strip()

    # --- writes -----------------------------------------------------------------------
    def new_session(self, name: str, *, cwd: Path, command: str) -> None:
        """Create a detached session running ``command`` in ``cwd``; never starts a server."""
        check_name("session", name)
        self._create("new-session", "-d", "-s", name, "-c", str(cwd), "--", command)

    def new_session_env(self, name: str, *, cwd: Path, env: Mapping[str, str]) -> None:
        """[L]'s creation (2026 §3.4): a detached session whose shell gets ``env`` by
        ``-e K=V`` (keys sorted; a value is ``-e``'s argument, never an option)."""
        check_name("session", name)
        pairs: list[str] = []
        for key in sorted(env):
            if not _ENV_KEY_RE.fullmatch(key):
                raise BadInput(f"invalid environment variable name {key!r}")
            pairs += ["-e", f"{key}={env[key]}"]
        self._create("new-session", "-d", "-s", name, "-c", str(cwd), *pairs)

    def _create(self, *args: str) -> None:
        """``new-session``: SessionExists when the name is taken. tmux checks that and
        creates in one step, so no ``has-session`` is needed before it."""
        result = self._run(*args)
        if result.ok:
            return
        if "duplicate session" in result.error_line().lower():
            raise SessionExists(f"tmux new-session: {result.error_line()}")
        raise ToolError(f"tmux new-session failed: {result.error_line()}")

    def respawn(self, name: str, *, cwd: Path, command: str) -> None:
        """``respawn-pane -k``: replace the pane's process with ``command``."""
        self._check("respawn-pane", "-k", "-t", f"={check_name('session', name)}:", "-c",
                    str(cwd), "--", command)

    def show_environment(self, name: str, key: str) -> str | None:
        """A session's variable (``show-environment -t S KEY``); None when unset."""
        if not _ENV_KEY_RE.fullmatch(key):
            raise BadInput(f"invalid environment variable name {key!r}")
        result = self._run("show-environment", "-t", f"={check_name('session', name)}", "--",
                           key)
        if not result.ok:
            if "unknown variable" in result.error_line().lower():
                return None
            raise ToolError(f"tmux show-environment failed: {result.error_line()}")
        line = result.stdout.strip()
        if line.startswith(f"{key}="):
            return line[len(key) + 1:]
        return None  # "-KEY": removed from the session

    def unset_environment(self, name: str, key: str) -> None:
        if not _ENV_KEY_RE.fullmatch(key):
            raise BadInput(f"invalid environment variable name {key!r}")
        self._check("set-environment", "-u", "-t", f"={check_name('session', name)}", "--",
                    key)

    def unset_hook(self, name: str, hook: str) -> None:
        """Remove a hook from the session and its window (the deacon/mayor auto-respawn
        hook of [L], 2026 §3.5, §3.8); a hook that is not set is no error."""
        check_name("session", name)
        for target in (f"={name}", f"={name}:"):
            self._run("set-hook", "-u", "-t", target, "--", hook)

    def kill_session(self, name: str) -> None:
        """Kill a session; one that is already gone counts as success."""
        result = self._run("kill-session", "-t", f"={check_name('session', name)}")
        if not result.ok and not _matches(result, _NO_SESSION):
            raise ToolError(f"tmux kill-session failed: {result.error_line()}")

    def set_environment(self, name: str, env: Mapping[str, str]) -> None:
        self.sequence(environment_commands(name, env))

    def set_options(self, name: str, options: Mapping[str, str]) -> None:
        self.sequence(option_commands(name, options))

    def set_hook(self, name: str, hook: str, command: str) -> None:
        """A hook of the session's window (``set-hook -t =NAME: HOOK COMMAND``)."""
        self.sequence([hook_command(name, hook, command)])

    def sequence(self, commands: Sequence[Sequence[str]]) -> None:
        """Several commands in one tmux client call (``;`` arguments between them): one
        process instead of one each. tmux stops at the first that fails: ToolError then
        (those before it took effect). Every argument reaches tmux as itself (:func:`_literal`)."""
        args: list[str] = []
        for command in commands:
            args += [";"] if args else []
            args += [_literal(a) for a in command]
        if not args:
            return
        result = self._call(args)
        if not result.ok:
            raise ToolError(f"tmux {commands[0][0]} failed: {result.error_line()}")

    def set_global_hook(self, hook: str, command: str) -> None:
        self._check("set-hook", "-g", "--", hook, command)

    def send_literal(self, name: str, text: str) -> None:
        """Type ``text`` as it is: after ``--``, a text such as ``-x`` is not an option."""
        self._check("send-keys", "-t", f"={check_name('session', name)}:", "-l", "--", text)

    def send_key(self, name: str, key: str) -> None:
        self._check("send-keys", "-t", f"={check_name('session', name)}:", "--", key)

    def resize_pane(self, name: str, delta: str) -> None:
        """``-y DELTA`` (``-1``, ``+1``): a signed number, nothing else."""
        if not _DELTA_RE.fullmatch(delta):
            raise BadInput(f"invalid resize delta {delta!r}: expected e.g. -1 or +1")
        self._check("resize-pane", "-t", f"={check_name('session', name)}:", "-y", delta)


def environment_commands(name: str, env: Mapping[str, str]) -> list[list[str]]:
    """``set-environment`` of every variable of ``env`` in the session (sorted)."""
    target = f"={check_name('session', name)}"
    return [["set-environment", "-t", target, "--", key, env[key]] for key in sorted(env)]


def option_commands(name: str, options: Mapping[str, str]) -> list[list[str]]:
    # "=NAME" fails here: "=NAME:" targets the session's window
    target = f"={check_name('session', name)}:"
    return [["set-option", "-t", target, "--", option, value]
            for option, value in options.items()]


def hook_command(name: str, hook: str, command: str) -> list[str]:
    # tmux 3.3a stores pane hooks such as pane-died on the window: "=NAME:" targets it.
    return ["set-hook", "-t", f"={check_name('session', name)}:", "--", hook, command]


def _literal(arg: str) -> str:
    r"""``arg`` as tmux must receive it to read it as itself: tmux takes an argument that
    ends in ``;`` as the end of a command (a value ``a;`` would arrive as ``a``), and one
    that ends in a backslash and ``;`` as ending in a literal ``;``.

    >>> _literal("a;"), _literal("a\\;"), _literal("a;b")
    ('a\\;', 'a\\\\;', 'a;b')
    """
    return f"{arg[:-1]}\\;" if arg.endswith(";") else arg


def _matches(result: runner.Result, needles: tuple[str, ...]) -> bool:
    text = (result.stderr + result.stdout).lower()
    return any(n in text for n in needles)
