"""LIFECYCLE shutdown requests to a Witness: clean check, stop, remove, delete, acknowledge.

Every step checks before it acts, so a request that is retried (dirty worktree, a failing
tool) or processed twice does no harm; the message is acknowledged (deleted) only when the
polecat is gone. A dirty worktree is never removed: the polecat is told why, once per
``renotify`` seconds, and the request stays for the next pass.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from gastown_units.errors import GastownError
from gastown_units.ports.git import Git
from gastown_units.ports.mail import Mail, Message
from gastown_units.ports.tmux import Snapshot
from gastown_units.runtime.loop import Context
from gastown_units.services.sessions import SessionKeeper
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
    keeper: SessionKeeper
    git: Git
    mail: Mail
    renotify: float
    notified: dict[str, float]  # message id -> when the polecat was told why not (persisted)
    save: Callable[[], None]

    def handle(self, message: Message, snap: Snapshot, ctx: Context) -> str:
        """Process one request; returns what happened (for the status line)."""
        name = polecat_of(message, self.rig)
        if name is None:
            log.warning("shutdown request %s names no polecat I can parse (%r): left alone",
                        message.id, message.subject)
            return "unparseable"
        who = Identity(Role.POLECAT, self.rig, name)
        where = {"GT_AGENT": who.address}
        tree = worktree(self.town, self.rig, name)
        pane = snap.first_pane(who.session)
        if tree is not None:
            dirty = self.git.dirty_reason(tree)
            ctx.progress()
            if dirty:
                self._tell_dirty(message, who, dirty)
                return "dirty"
        if pane is not None:
            self.keeper.kill(who.session, pane, ctx)
            log.info("stopped %s for its shutdown request", who.session, extra=where)
        if tree is not None:
            repo = self.git.common_dir(tree)
            ctx.progress()
            self.git.remove_worktree(repo, tree)
            ctx.progress()
            log.info("removed worktree %s", tree, extra=where)
            base = self.town.rig_dir(self.rig) / "polecats" / name
            if base.is_dir() and not any(base.iterdir()):
                base.rmdir()
        self._delete_branch(who)
        ctx.progress()
        self.mail.delete(message.id)
        self.notified.pop(message.id, None)
        self.save()
        log.info("shutdown of polecat %s done; request %s acknowledged", who.address,
                 message.id, extra=where)
        return "done"

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
                    reason, extra={"GT_AGENT": who.address})

    def _delete_branch(self, who: Identity) -> None:
        clone = self.town.rig_dir(self.rig) / "mayor" / "rig"
        branch = f"polecat/{who.name}"
        if not (clone / ".git").exists() or not self.git.branch_exists(clone, branch):
            return
        kept = self.git.delete_merged_branch(clone, branch)
        if kept:
            log.warning("branch %s in %s %s", branch, clone, kept,
                        extra={"GT_AGENT": who.address})
        else:
            log.info("deleted branch %s in %s", branch, clone, extra={"GT_AGENT": who.address})


def process_requests(handler: ShutdownHandler, messages: list[Message], snap: Snapshot,
                     ctx: Context) -> dict[str, int]:
    """Handle every shutdown request in the inbox; one failure does not stop the others."""
    counts: dict[str, int] = {}
    for message in messages:
        if not is_shutdown_request(message):
            continue
        ctx.progress()
        try:
            outcome = handler.handle(message, snap, ctx)
        except GastownError as exc:
            log.error("shutdown request %s not finished (retried next pass): %s",
                      message.id, exc)
            outcome = "failed"
            ctx.failed(str(exc))
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
