"""The events an operator is told about: one table, their journal ``MESSAGE_ID`` and catalog.

Each :class:`Event` has a fixed 128-bit ``MESSAGE_ID`` (32 hex digits, generated once and
never changed), a title, an explanation and its fix. :func:`log_event` writes a journal
entry with that ``MESSAGE_ID`` and the agent's ``GT_AGENT``/``GT_ROLE``/``GT_RIG``;
:func:`catalog` renders the journald catalog (``gastown-units.catalog``) the package ships
from the same table, so ``journalctl -x`` explains every event. Run
``python3 -m gastown_units.runtime.events`` to print the catalog (``debian/rules`` does).

Fields of one agent (:func:`agent_fields`) are the same whichever service writes:
``GT_AGENT`` (its mail address), ``GT_ROLE`` (its role) and ``GT_RIG`` (its rig, if any).
"""

from __future__ import annotations

import logging
import re
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only; keeps this module free of imports
    from gastown_units.town.identity import Identity

DEFINED_BY = "gastown-units"
DOCUMENTATION = "file:///usr/share/doc/gastown-units/README.md"
WIDTH = 78
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Event:
    name: str
    message_id: str  # 32 lower-case hex digits, fixed forever
    title: str  # the catalog's Subject: line (may use @FIELD@ of the entry)
    explanation: str
    fix: str
    level: int = logging.WARNING


EVENTS: tuple[Event, ...] = (
    Event("agent-restarted", "aa610525e14e4bb48b0e69b0013b4b91",
          "Gas Town agent @GT_AGENT@ restarted",
          "The agent's tmux session was gone, or its pane was dead or ran a shell instead of "
          "the agent (a zombie), so a gastown-units service started it again by the agent's "
          "start profile. GT_AGENT, GT_ROLE and GT_RIG name the agent.",
          "Nothing, if it happens rarely. If one agent restarts often, read its earlier "
          "entries (journalctl GT_AGENT=@GT_AGENT@) and its pane; repeated restarts back off "
          "and end in a crash loop.", logging.INFO),
    Event("crash-loop", "d795c804097b4327b59cfa4650b97d41",
          "Gas Town agent @GT_AGENT@ is in a crash loop: restarts stopped",
          "The agent was restarted too many times within the crash-loop window "
          "(GT_CRASH_LOOP_RESTARTS within GT_CRASH_LOOP_WINDOW), so automatic restarts stop "
          "until an operator releases it. mayor/ was mailed once for this incident.",
          "Find why the agent dies (its worktree, its hooked work, the agent program), "
          "then run: gastown-units clear-backoff @GT_AGENT@", logging.ERROR),
    Event("mass-death", "3e938f9dce8d4bcaa1bd9dcb67098620",
          "Gas Town mass death: several agent sessions died at once",
          "At least GT_MASS_DEATH_COUNT polecat sessions died within GT_MASS_DEATH_WINDOW. "
          "A common cause is outside the agents: the tmux server, the machine (memory, OOM "
          "killer), an expired credential of the agent program or a broken tool. A "
          "mass_death event was appended to the town's events file.",
          "Check the tmux host unit (systemctl status gastown-tmux), the kernel log for the "
          "OOM killer (journalctl -k) and the agent program's credentials before the "
          "restarted agents die again."),
    Event("stale-request-dropped", "1b887e51e1404893a17b74ecda87721d",
          "Gas Town dropped a stale lifecycle request",
          "A LIFECYCLE request (cycle, restart or shutdown) was older than the maximum age "
          "(GT_LIFECYCLE_MAX_AGE, 6 h as in Gas Town) when it was read, so it was deleted "
          "without being carried out: an old request acted on late can kill an agent that "
          "is doing new work.",
          "If the request is still wanted, send it again; if requests are often stale, "
          "check that gastown-lifecycle-mail.service runs."),
    Event("shutdown-done", "c2ffca6cceba424c94a80bdba6e091f7",
          "Gas Town agent @GT_AGENT@ shut down on request",
          "A shutdown request was carried out: the agent was marked as shut down and its "
          "session stopped (for a polecat with a clean worktree, the worktree and its branch "
          "were removed). Keepers and crash sweeps keep it down.",
          "Nothing. To bring the agent back, start it by hand or run: "
          "gastown-units clear-backoff @GT_AGENT@", logging.INFO),
    Event("agent-held", "4fccd1dc0bb64dac9408452c240dab0d",
          "Gas Town agent @GT_AGENT@ held: not restarted",
          "An operator held the agent: the services neither start nor restart it, and "
          "its death is no crash, until it is released.",
          "When it may run again: gastown-units release @GT_AGENT@", logging.INFO),
    Event("agent-released", "786125cc66b24c8d87c4cca32833adb8",
          "Gas Town agent @GT_AGENT@ released",
          "The hold on the agent ended: the services start and restart it again.",
          "Nothing.", logging.INFO),
    Event("unit-failed", "e126c9f9356848d7b9115714cf139333",
          "Gas Town unit @GT_UNIT@ failed for good",
          "A gastown-units supervisor stopped and systemd will not start it again by itself: "
          "it hit its start limit (it failed too often in a row) or exited with status 78 "
          "(a configuration error: a missing town, an unreadable rigs.json, an unknown rig). "
          "Its agents are not kept alive until it runs again. mayor/ was mailed once.",
          "Read why: journalctl -u @GT_UNIT@ -n 50. Repair the cause, then: "
          "systemctl reset-failed @GT_UNIT@ && systemctl start @GT_UNIT@", logging.ERROR),
)

BY_NAME: dict[str, Event] = {event.name: event for event in EVENTS}
log = logging.getLogger(__name__)


def agent_fields(who: Identity) -> dict[str, str]:
    """The journal fields of one agent: ``GT_AGENT``, ``GT_ROLE`` and (rig agents) ``GT_RIG``."""
    fields = {"GT_AGENT": who.address, "GT_ROLE": str(who.role)}
    if who.rig:
        fields["GT_RIG"] = who.rig
    return fields


def log_event(name: str, text: str, *args: object, fields: Mapping[str, str] | None = None,
              who: Identity | None = None, logger: logging.Logger | None = None,
              level: int | None = None) -> None:
    """Log ``text % args`` as the event ``name``: its ``MESSAGE_ID`` plus the fields."""
    event = BY_NAME[name]
    extra: dict[str, str] = {"MESSAGE_ID": event.message_id, "GT_EVENT": event.name}
    if who is not None:
        extra.update(agent_fields(who))
    extra.update(fields or {})
    (logger or log).log(event.level if level is None else level, text, *args, extra=extra)


def catalog() -> str:
    """The journald catalog of every event (``-- ID`` header, Subject, text, fix)."""
    parts = []
    for event in EVENTS:
        parts.append(
            f"-- {event.message_id}\n"
            f"Subject: {event.title}\n"
            f"Defined-By: {DEFINED_BY}\n"
            f"Documentation: {DOCUMENTATION}\n"
            "\n"
            f"{textwrap.fill(event.explanation, WIDTH)}\n"
            "\n"
            f"{textwrap.fill('What to do: ' + event.fix, WIDTH)}\n")
    return "# gastown-units events (generated from gastown_units/runtime/events.py)\n\n" + \
        "\n".join(parts)


def valid_id(message_id: str) -> bool:
    return bool(_HEX32.match(message_id))


if __name__ == "__main__":  # pragma: no cover - used by debian/rules
    sys.stdout.write(catalog())
