"""LIFECYCLE shutdown requests to a Witness: clean check, stop, remove, delete, acknowledge.

The whole sequence runs under the polecat's lock, on a fresh look at tmux, so no other
service starts the polecat in between; a shutdown marker written before the kill keeps
polecat-health from bringing it back afterwards (design rule 9). A request older than the
max age, or older than the session or worktree it would destroy (a polecat name reused
from the pool), is deleted without touching anything. The marker names the request, so a
request is carried out at most once: a retry after a failed step only finishes the
cleanup. A polecat an operator holds (``gastown-units hold``) is left alone and its
request stays in the inbox until the release. A dirty worktree is never removed: the
polecat is told why, once per ``renotify`` seconds, and the request stays for the next
pass. The worktree is removed only once no session of the polecat exists.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gastown_units.errors import ToolError
from gastown_units.ports.git import Git
from gastown_units.ports.mail import Mail, Message
from gastown_units.ports.tmux import Pane, Snapshot
from gastown_units.runtime.contain import contained
from gastown_units.runtime.events import agent_fields, log_event
from gastown_units.runtime.loop import Context
from gastown_units.services.actor import BUSY_RETRY, AgentActor, OperatorHeld
from gastown_units.services.lifecycle_parse import TooOld, too_old
from gastown_units.town.identity import Identity, Role
from gastown_units.town.layout import Town
from gastown_units.town.names import valid_name
from gastown_units.town.polecats import worktree

log = logging.getLogger(__name__)

_SUBJECT_TARGET = re.compile(r"^\s*lifecycle:\s*shutdown\s+(\S+)", re.IGNORECASE)
_SUBJECT_REQUEST = re.compile(r"^\s*lifecycle:\s*(\S+)\s+requesting\s+shutdown", re.IGNORECASE)
_BODY_POLECAT = re.compile(r"^\s*polecat:\s*(\S+)\s*$", re.IGNORECASE | re.MULTILINE)


def is_shutdown_request(message: Message) -> bool:
    subject = message.subject.lower()
    return subject.lstrip().startswith("lifecycle:") and "shutdown" in subject


def polecat_of(message: Message, rig: str) -> str | None:
    """The polecat a shutdown request names, in any of the forms Gas Town sends."""
    for pattern, text in ((_BODY_POLECAT, message.body), (_SUBJECT_TARGET, message.subject),
                          (_SUBJECT_REQUEST, message.subject)):
        found = pattern.search(text)
        if found:
            name = found.group(1)
            for prefix in (f"{rig}/polecats/", f"{rig}/", "polecats/", "polecat-"):
                name = name.removeprefix(prefix)
            return name if valid_name(name) else None
    return None


@dataclass
class ShutdownHandler:
    town: Town
    rig: str
    actor: AgentActor
    git: Git
    mail: Mail
    renotify: float
    max_age: float
    notified: dict[str, float]  # message id -> when the polecat was told why not (persisted)
    save: Callable[[], None]
    hook_of: Callable[[Identity], str | None]  # the hooked work now; None when unknown

    def handle(self, message: Message, snap: Snapshot, ctx: Context) -> str:
        """Process one request; returns what happened (for the status line)."""
        name = polecat_of(message, self.rig)
        if name is None:
            log.warning("shutdown request %s names no polecat I can parse (%r): left alone",
                        message.id, message.subject)
            return "unparseable"
        who = self.actor.spelt(Identity(Role.POLECAT, self.rig, name))
        with self.actor.hold(who, f"shutdown ({message.id})") as mine:
            if not mine:
                ctx.retry_in(BUSY_RETRY)
                return "busy"
            try:
                return self._handle_locked(message, who, ctx)
            except OperatorHeld:  # held meanwhile (the actor logged it): nothing was done
                return "held"

    def _handle_locked(self, message: Message, who: Identity, ctx: Context) -> str:
        where = agent_fields(who)
        if self.actor.operator_hold(who, "shutting down") is not None:
            return "held"  # an operator holds it: the request waits for the release
        pane = self.actor.pane_now(who)  # fresh, under the lock
        tree = worktree(self.town, self.rig, str(who.name))
        mark = self.actor.mark(who)
        resumed = mark is not None and mark.readable and mark.request == message.id
        if resumed and mark is not None and pane is not None and pane.created > mark.at:
            return self._ack_unexecuted(message, who, "a new session of that name runs "
                                        "since the shutdown was carried out", "stale")
        if not resumed:
            old = self._too_old(message, pane, tree)
            if old is not None:
                return self._ack_unexecuted(message, who, old.detail, old.kind)
        if tree is not None:
            dirty = self.git.dirty_reason(tree)
            ctx.progress()
            if dirty:
                self._tell_dirty(message, who, dirty)
                return "dirty"
        hook = self.hook_of(who) if not resumed else (mark.hook_bead if mark else None)
        self.actor.shutdown(who, pane, ctx, by=f"{self.rig}/witness", hook_bead=hook,
                            request=message.id)
        if pane is not None:
            log.info("stopped %s for its shutdown request %s", who.session, message.id,
                     extra=where)
        ctx.progress()
        if self.actor.pane_now(who) is not None:
            raise ToolError(f"{who.session} still has a session after the kill: worktree "
                            "kept, retried next pass")
        repo = self._remove_worktree(who, tree, ctx)
        self._delete_branch(who, repo, ctx)
        ctx.progress()
        self.mail.delete(message.id)
        self.notified.pop(message.id, None)
        self.save()
        log_event("shutdown-done", "shutdown of polecat %s done; request %s acknowledged",
                  who.address, message.id, who=who, logger=log)
        return "done"

    def _too_old(self, message: Message, pane: Pane | None, tree: Path | None
                 ) -> TooOld | None:
        """Past the max age, or older than the session or worktree it would destroy."""
        old = too_old(message.timestamp, datetime.now(UTC), self.max_age,
                      pane.created if pane is not None else None)
        if old is not None or message.timestamp is None or tree is None:
            return old
        born = _created(tree)
        if born is not None and message.timestamp.timestamp() < born:
            return TooOld("stale", "sent before the polecat's worktree was created")
        return None

    def _ack_unexecuted(self, message: Message, who: Identity, why: str, kind: str) -> str:
        """Delete a request that must not be carried out (nothing is touched)."""
        self.mail.delete(message.id)
        self.notified.pop(message.id, None)
        self.save()
        log_event("stale-request-dropped", "deleted %s shutdown request %s for %s without "
                  "acting: %s", kind, message.id, who.address, why, who=who, logger=log,
                  level=logging.WARNING)
        return kind

    def _remove_worktree(self, who: Identity, tree: Path | None, ctx: Context) -> Path:
        """Remove the worktree (its session is gone); returns the repository it belonged to."""
        clone = self.town.rig_dir(self.rig) / "mayor" / "rig"
        if tree is None:
            return clone
        repo = self.git.common_dir(tree)
        ctx.progress()
        self.git.remove_worktree(repo, tree, progress=ctx.progress)
        ctx.progress()
        log.info("removed worktree %s", tree, extra=agent_fields(who))
        base = self.town.rig_dir(self.rig) / "polecats" / str(who.name)
        if base.is_dir() and not any(base.iterdir()):
            base.rmdir()
        return repo

    def _tell_dirty(self, message: Message, who: Identity, reason: str) -> None:
        last = self.notified.get(message.id)
        if last is not None and time.time() - last < self.renotify:
            return
        self.mail.send(who.address, f"NUDGE: Cannot shutdown - {reason}",
                       f"Your shutdown was requested ({message.subject}), but your worktree "
                       f"is not clean: {reason}.\n\nCommit or discard your changes; the "
                       "Witness retries on its next pass.")
        self.notified[message.id] = time.time()
        self.save()
        log.warning("polecat %s cannot be shut down yet: %s (told it by mail)", who.address,
                    reason, extra=agent_fields(who))

    def _delete_branch(self, who: Identity, repo: Path, ctx: Context) -> None:
        """Delete ``polecat/<name>`` (merged only) where the worktree's branches live."""
        branch = f"polecat/{who.name}"
        if not repo.exists() or not self.git.branch_exists(repo, branch):
            return
        ctx.progress()
        kept = self.git.delete_merged_branch(repo, branch)
        if kept:
            log.warning("branch %s in %s %s", branch, repo, kept,
                        extra=agent_fields(who))
        else:
            log.info("deleted branch %s in %s", branch, repo, extra=agent_fields(who))


def _created(tree: Path) -> float | None:
    """When the worktree was made: its ``.git`` entry is written once, by ``worktree add``."""
    try:
        return (tree / ".git").lstat().st_mtime
    except OSError:
        return None


def process_requests(handler: ShutdownHandler, messages: list[Message], snap: Snapshot,
                     ctx: Context) -> dict[str, int]:
    """Handle every shutdown request in the inbox; one failure does not stop the others."""
    counts: dict[str, int] = {}
    for message in messages:
        if not is_shutdown_request(message):
            continue
        ctx.progress()
        outcome = "failed"
        with contained(f"shutdown request {message.id} (retried next pass)", ctx):
            outcome = handler.handle(message, snap, ctx)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
