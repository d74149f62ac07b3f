"""The loop every long-running service shares.

One thread does the work. Signal handlers only set a flag and write a byte to a pipe, so
the loop wakes at once. The watchdog is fed from the same loop (``Context.progress``), never
from a free-running thread: a hung pass stops the pings and systemd restarts us.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Protocol

from gastown_units.errors import (
    EX_CONFIG,
    EX_FAILURE,
    EX_OK,
    ConfigError,
    GastownError,
    LockConflict,
)
from gastown_units.runtime.notify import Notifier
from gastown_units.runtime.wake import EventWatch, FileWatch, UnlinkWatch, Watched
from gastown_units.town.jsonfile import take_damage

log = logging.getLogger(__name__)

# While the tmux host's runtime directory is missing (the unit is restarting), look for it
# this often, so that the watch is back within about this long after it returns.
DIRECTORY_POLL = 1.0


class Stopping(Exception):
    """Raised inside a pass when a stop was requested, to end it early."""


@dataclass
class Context:
    """What a pass may use: feed the watchdog, check for stop, publish a status line."""

    notifier: Notifier
    stop_requested: Callable[[], bool]
    failures: list[str] = field(default_factory=list)
    soon: float | None = None  # run the next pass within this many seconds
    once: bool = False  # a single pass (--once): work started in the background is awaited
    reloaded: bool = False  # this pass follows a SIGHUP (systemctl reload): read facts afresh

    def progress(self) -> None:
        """Call between steps and in waits: pings the watchdog, aborts on stop."""
        if self.stop_requested():
            raise Stopping()
        self.notifier.ping()

    def sleep(self, seconds: float) -> None:
        """A short pause inside a step (tmux debounce) that still feeds the watchdog."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.progress()
            time.sleep(min(left, 0.1))

    def status(self, text: str) -> None:
        self.notifier.status(text)

    def retry_in(self, seconds: float) -> None:
        """Ask for the next pass within ``seconds`` (work was left for a busy agent)."""
        self.soon = seconds if self.soon is None else min(self.soon, seconds)

    def failed(self, what: str) -> None:
        """Record that an action of this pass failed (``--once`` then exits 1)."""
        self.failures.append(what)


class Service(Protocol):
    name: str

    def setup(self, ctx: Context) -> str:
        """Check configuration and take resources; return the first status line."""
        ...

    def tick(self, ctx: Context) -> str:
        """One pass; return the status line to publish."""
        ...

    def close(self) -> None: ...


class _Signals:
    def __init__(self) -> None:
        self.stop = False
        self.wake = False
        self.reload = False
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old: dict[int, object] = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._on_stop)
        self._old[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_reload)
        self._old[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, self._on_wake)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
        os.close(self._read)
        os.close(self._write)

    def _poke(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._write, b"x")

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stop = True
        self._poke()

    def _on_wake(self, signum: int, _frame: FrameType | None) -> None:
        self.wake = True
        self._poke()

    def _on_reload(self, signum: int, _frame: FrameType | None) -> None:
        self.reload = True
        self._on_wake(signum, _frame)

    def wait(self, seconds: float, events: EventWatch | None = None,
             unlinks: UnlinkWatch | None = None, files: FileWatch | None = None,
             wants: Callable[[str], bool] | None = None) -> float | None:
        """Sleep up to ``seconds``; return early on any signal, a tmux event about a
        session ``wants`` (by its token; None: every session) or unlink of the town lock
        (``wake`` set), or a change of a watched town file (its gap returned)."""
        if self.stop or self.wake:
            return None
        fds = [self._read]
        if events is not None:
            if events.arm():  # the tmux host came (back): what it reported meanwhile is lost
                self.wake = True
                return None
            if events.fd is not None:
                fds.append(events.fd)
            if events.waiting_for_directory:
                seconds = min(seconds, DIRECTORY_POLL)
        if unlinks is not None and unlinks.fd is not None:
            fds.append(unlinks.fd)
        if files is not None and files.fd is not None:
            fds.append(files.fd)
        ready, _, _ = select.select(fds, [], [], max(0.0, seconds))
        gap = files.drain() if files is not None and files.fd in ready else None
        if unlinks is not None and unlinks.fd in ready and unlinks.drain():
            self.wake = True
        if events is not None and events.fd in ready:
            closed = events.drain()
            if closed is None or wants is None or any(map(wants, closed)):
                self.wake = True
            elif closed:
                log.debug("tmux event for %s: not our agent's session, no pass",
                          ", ".join(sorted(closed)))
        if self._read in ready:
            try:
                while os.read(self._read, 64):
                    pass
            except BlockingIOError:
                pass
        return gap


def watched_by(service: Service) -> list[Watched]:
    """The town files and stores ``service`` wants to be woken by (none if it says none;
    an unreadable town yields what could be found, never a failed pass)."""
    watched = getattr(service, "watched", None)
    if watched is None:
        return []
    try:
        found = watched()
    except (OSError, ValueError, AssertionError) as exc:
        log.debug("cannot tell which files to watch: %s", exc)
        return []
    return list(found)


def wanted_by(service: Service) -> Callable[[str], bool] | None:
    """Which closed sessions (by token) wake ``service``: those its ``wakes_for`` names,
    or every one when it has none; a question it cannot answer wakes it."""
    wakes_for = getattr(service, "wakes_for", None)
    if wakes_for is None:
        return None

    def wants(token: str) -> bool:
        try:
            return bool(wakes_for(token))
        except Exception as exc:  # noqa: BLE001 - waking is always safe, a crash is not
            log.debug("cannot tell whether session %s is ours (%s): waking", token, exc)
            return True
    return wants


def with_failures(status: str, failures: list[str]) -> str:
    """The status line, plus what failed this pass when the line does not say it already.

    >>> with_failures("3 restarted", ["restart of gt-x failed", "mail failed"])
    '3 restarted; 2 failure(s), first: restart of gt-x failed'
    """
    if not failures or failures[0] in status:
        return status
    return f"{status}; {len(failures)} failure(s), first: {failures[0]}"


def with_damage(status: str, damage: dict[Path, str]) -> str:
    """The status line, plus the damaged files this pass met (named, until repaired).

    >>> with_damage("ok", {Path("/t/mayor/rigs.json"): "not valid JSON"})
    'ok; damaged: /t/mayor/rigs.json (not valid JSON)'
    >>> with_damage("ok", {Path(f"/t/{n}"): "empty file" for n in "abc"})
    'ok; damaged: /t/a (empty file), /t/b (empty file) and 1 more'
    """
    if not damage:
        return status
    named = [f"{path} ({why})" for path, why in list(damage.items())[:2]]
    more = f" and {len(damage) - 2} more" if len(damage) > 2 else ""
    return f"{status}; damaged: {', '.join(named)}{more}"


def run_service(service: Service, *, interval: float, once: bool,
                notifier: Notifier | None = None, event_file: Path | None = None) -> int:
    """Run ``service`` until SIGTERM (or one pass with ``once``); return the exit code.

    Between passes it waits for the interval, a signal (SIGHUP/SIGUSR1: pass now), a
    change of ``event_file`` (tmux reported a closed session) or a change of a file the
    service watches (``service.watched()``: its pass then starts no sooner than the
    watch's gap after the last one ended).
    """
    notifier = notifier or Notifier()
    signals = _Signals()
    signals.install()
    events = EventWatch(None if once else event_file)
    files = FileWatch() if not once else None
    unlinks: UnlinkWatch | None = None
    ctx = Context(notifier, lambda: signals.stop, once=once)
    try:
        take_damage()  # what an earlier run in this process met is not this pass's
        try:
            first = service.setup(ctx)
        except ConfigError as exc:
            log.error("configuration error: %s", exc)
            notifier.status(f"configuration error: {exc}")
            return EX_CONFIG
        notifier.ready(first)
        log.info("%s started: %s", service.name, first)
        if files is not None:  # before the first pass ends: nothing said meanwhile is lost
            files.update(watched_by(service))
        wants = wanted_by(service)
        lock_file = getattr(service, "lock_file", None)  # the held town lock, if any
        if not once and isinstance(lock_file, Path):
            unlinks = UnlinkWatch(lock_file)
        # Never sleep longer than half the watchdog period between pings.
        wait = interval if notifier.period is None else min(interval, notifier.period)
        while not signals.stop:
            signals.wake = False
            ctx.reloaded, signals.reload = signals.reload, False
            ctx.failures.clear()
            ctx.soon = None
            try:
                status = service.tick(ctx)
            except Stopping:
                break
            except LockConflict as exc:  # a gt daemon won the town: stop, do not retry
                log.error("%s", exc)
                notifier.status(f"stopped: {exc}")
                return EX_CONFIG
            except GastownError as exc:  # expected: a tool failed; state is unknown
                log.warning("pass incomplete: %s", exc)
                status = f"pass incomplete: {exc}"
                ctx.failed(str(exc))
            except Exception as exc:  # noqa: BLE001 - a bug must not become a crash loop
                from gastown_units.runtime.contain import report

                status = report("pass", exc)
                ctx.failed(status)
            line = with_damage(with_failures(status, ctx.failures), take_damage())
            notifier.status(line)
            log.debug("pass over: %s", line)
            notifier.ping(force=True)
            if once:
                return EX_FAILURE if ctx.failures else EX_OK
            if files is not None:
                files.update(watched_by(service))
            ended = time.monotonic()
            pause = interval if ctx.soon is None else min(interval, ctx.soon)
            deadline = ended + pause
            while not signals.stop and not signals.wake:
                if (left := deadline - time.monotonic()) <= 0:
                    break
                gap = signals.wait(min(wait, left), events, unlinks, files, wants)
                if gap is not None:  # a watched file changed: pass after its gap
                    deadline = min(deadline, ended + gap)
                    log.debug("a watched town file changed: next pass within %.1fs", gap)
                notifier.ping()
            if signals.wake and not signals.stop:
                log.debug("woken (signal, tmux event or town lock unlinked): running a pass now")
        notifier.stopping(f"{service.name} stopping (agent sessions are left running)")
        log.info("%s stopping on request; agent sessions are left running", service.name)
        return EX_OK
    finally:
        try:
            service.close()
        finally:
            events.close()
            if files is not None:
                files.close()
            if unlinks is not None:
                unlinks.close()
            signals.restore()
