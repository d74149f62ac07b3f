"""The ``bd`` CLI (contract beads.md §2-§5), tolerant of the Jan-2026 and later variants.

Reads distinguish "not found" (positive knowledge) from "bd failed" (ToolError: unknown,
design rule 3). Parsing lives in pure functions below the port.

Every argv element from data goes through :mod:`gastown_units.ports.argv` or after ``--``:
bead IDs (from beads, mail, ``rigs.json`` and ``routes.jsonl`` prefixes) are checked IDs,
so a prefix such as ``--db=/tmp/evil`` never becomes a ``bd`` flag; a bad one is BadInput
(a ToolError: unknown, like a failed ``bd``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gastown_units.errors import ToolError
from gastown_units.ports import runner
from gastown_units.ports.argv import checked_bead_id


@dataclass(frozen=True)
class AgentBead:
    """The fields of an agent bead the services use."""

    id: str
    hook_bead: str
    agent_state: str
    updated_at: str
    status: str
    labels: tuple[str, ...]
    hook_column: str | None = None  # the JSON key ``hook_bead``; None: bd emits no such key


def parse_description_fields(description: str) -> dict[str, str]:
    """``key: value`` lines of an agent bead description; ``null``/empty become ``""``.

    >>> parse_description_fields("Polecat Toast\\n\\nhook_bead: gt-abc\\nactive_mr: null")
    {'hook_bead': 'gt-abc', 'active_mr': ''}
    """
    fields: dict[str, str] = {}
    for line in description.splitlines()[1:]:
        key, sep, value = line.partition(":")
        if not sep or not key.strip() or " " in key.strip():
            continue
        value = value.strip()
        fields[key.strip().lower()] = "" if value == "null" else value
    return fields


def agent_from_json(obj: dict[str, Any]) -> AgentBead:
    """Columns win over description lines for ``hook_bead`` ([J]); ``agent_state`` falls back."""
    desc = parse_description_fields(str(obj.get("description") or ""))
    hook = obj.get("hook_bead") or desc.get("hook_bead", "")
    state = obj.get("agent_state") or desc.get("agent_state", "")
    labels = raw if isinstance(raw := obj.get("labels"), list) else []
    column = obj.get("hook_bead") if "hook_bead" in obj else None
    return AgentBead(
        id=str(obj.get("id", "")),
        hook_bead=str(hook or ""),
        agent_state=str(state or ""),
        updated_at=str(obj.get("updated_at") or ""),
        status=str(obj.get("status") or ""),
        labels=tuple(str(x) for x in labels if isinstance(x, str)),
        hook_column=None if "hook_bead" not in obj else str(column or ""),
    )


def is_agent(obj: dict[str, Any]) -> bool:
    """[L] §4.1: an agent bead is ``issue_type == "agent"`` **or** labelled ``gt:agent``."""
    labels = obj.get("labels")
    return obj.get("issue_type") == "agent" or \
        (isinstance(labels, list) and "gt:agent" in labels)


WORK_STATUSES = ("hooked", "in_progress")


def assigned_work(issues: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Assignee → (issue ID, status) of its work: ``hooked`` before ``in_progress``, then
    the smallest ID ([L] §4.2: the assignee and status are authoritative, not a hook slot).

    >>> assigned_work([{"id": "st-2", "status": "in_progress", "assignee": "st/polecats/a"},
    ...                {"id": "st-9", "status": "hooked", "assignee": "st/polecats/a"},
    ...                {"id": "st-3", "status": "closed", "assignee": "st/polecats/b"}])
    {'st/polecats/a': ('st-9', 'hooked')}
    """
    found: dict[str, tuple[str, str]] = {}
    for issue in issues:
        who, status, bead = issue.get("assignee"), issue.get("status"), issue.get("id")
        if not isinstance(who, str) or not who or status not in WORK_STATUSES or \
                not isinstance(bead, str) or not bead:
            continue
        rank = (WORK_STATUSES.index(str(status)), bead)
        old = found.get(who)
        if old is None or rank < (WORK_STATUSES.index(old[1]), old[0]):
            found[who] = (bead, str(status))
    return found


NOT_FOUND = ("no issue found matching", "no issues found matching", "not found")


def names_no_match(text: str) -> bool:
    """Does a ``bd`` error text say "no such issue" (every era's wording, beads.md §2.4)?

    >>> names_no_match('resolving ID gt-x: operation failed: failed to resolve ID: '
    ...                'no issue found matching "gt-x"'), names_no_match("database is locked")
    (True, False)
    """
    lower = text.lower()
    return any(needle in lower for needle in NOT_FOUND)


def parse_issue_list(stdout: str) -> list[dict[str, Any]] | str | None:
    """An array of issues; ``None`` for no issues (empty output, ``[]``, ``null``); the
    message of an ``{"error": …}`` object as a ``str`` (the caller decides what it means).

    Accepts the later ``{"schema_version", "data": …}`` envelope too (beads.md §9).
    Raises ValueError for output that is not JSON.
    """
    text = stdout.strip()
    if not text:
        return None
    data = json.loads(text)
    if isinstance(data, dict) and "data" in data and "schema_version" in data:
        data = data["data"]
    if isinstance(data, dict) and "error" in data:
        return str(data.get("error") or "error")
    if data is None:
        return None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ValueError("bd output is neither an array nor an object")
    return [item for item in data if isinstance(item, dict)] or None


class Beads:
    """The ``bd`` port: run from the town root, like Gas Town's daemon, where ``show`` and
    ``update`` route by prefix; :meth:`at` pins one database for ``list`` and ``ready``,
    which never route (beads.md §7.6)."""

    def __init__(self, *, binary: str, cwd: Path, timeout: float,
                 database: Path | None = None) -> None:
        self.binary = binary
        self.cwd = cwd
        self.timeout = timeout
        self.database = database

    def at(self, database: Path) -> Beads:
        """The same port pinned to one ``.beads`` directory (``BEADS_DIR``, §7.1)."""
        return Beads(binary=self.binary, cwd=database.parent, timeout=self.timeout,
                     database=database)

    def _json(self, *args: str) -> list[dict[str, Any]] | None:
        """Issues, or None when ``bd`` says there are none / no such issue (absent).

        Every other failure is a ToolError: unknown, never "absent" (beads.md §2.4).
        """
        return self._json_exit(*args)[0]

    def _json_exit(self, *args: str) -> tuple[list[dict[str, Any]] | None, bool]:
        """:meth:`_json` and whether ``bd`` exited 0."""
        env = {"BEADS_DIR": str(self.database)} if self.database else None
        result = runner.run([self.binary, *args], timeout=self.timeout, cwd=self.cwd, env=env)
        return self._judge(args[0], result), result.ok

    @staticmethod
    def _judge(command: str, result: runner.Result) -> list[dict[str, Any]] | None:
        """The issues of one ``bd`` run, None for "absent", ToolError for "unknown"."""
        try:
            parsed = parse_issue_list(result.stdout)
        except (ValueError, RecursionError):
            raise ToolError(f"bd {command}: unreadable output: {result.stdout[:80]!r}") from None
        if isinstance(parsed, str):
            if names_no_match(parsed):
                return None
            raise ToolError(f"bd {command} failed: {parsed}")
        if not result.ok and parsed is None:
            if names_no_match(result.stderr + result.stdout):
                return None
            raise ToolError(f"bd {command} failed: {result.error_line()}")
        return parsed

    def show(self, bead_id: str) -> dict[str, Any] | None:
        """One issue, or None when bd says it does not exist."""
        items = self._json("show", checked_bead_id(bead_id), "--json")
        return items[0] if items else None

    def show_many(self, bead_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Several issues in one call (missing ones are simply absent).

        When that call fails as "not found", each ID is asked alone: through the daemon
        (and at N) one missing ID fails the whole call, which says nothing about the others.
        A direct-mode O ``bd`` exits 0 with the found ones: no extra calls then.
        """
        ids = sorted({checked_bead_id(one) for one in bead_ids})
        if not ids:
            return {}
        items, ok = self._json_exit("show", *ids, "--json")
        if items is None and not ok and len(ids) > 1:
            items = [found for one in ids if (found := self.show(one)) is not None]
        return {str(i.get("id")): i for i in items or []}

    def agent(self, bead_id: str) -> AgentBead | None:
        obj = self.show(bead_id)
        return agent_from_json(obj) if obj else None

    def list_agents(self) -> list[AgentBead]:
        """Every agent bead of this database, untruncated (``--limit 0``; the default is 50).

        Two calls, whatever the number of agents: the label form finds agents kept as tasks
        (auto-created by ``bd agent state``, beads.md §5.2; every agent of a mid-2026 town);
        the type form finds ``agent`` rows, which bd ≥ 1.0 hides from label queries (§9.7).
        """
        found: dict[str, dict[str, Any]] = {}
        for form in ("--label=gt:agent", "--type=agent"):
            for obj in self._json("list", form, "--json", "--limit", "0") or []:
                found.setdefault(str(obj.get("id")), obj)
        return [agent_from_json(o) for o in found.values()]

    def list_agents_l(self) -> list[AgentBead]:
        """[L] §4.3: every agent bead of this database in one call (bd 1.0.x hides the infra
        types without ``--include-infra``; [L] agents are tasks labelled ``gt:agent``)."""
        found = self._json("list", "--label=gt:agent", "--include-infra", "--json", "--flat",
                           "--limit", "0") or []
        return [agent_from_json(o) for o in found if is_agent(o)]

    def agent_l(self, bead_id: str, town_db: Path) -> AgentBead | None:
        """[L] §4.1/§4.2: the town DB (pinned) first, then prefix routing (a town upgraded
        from [J] keeps older agent beads in rig DBs). None only if both say "not found";
        a failing read of either is a ToolError (unknown)."""
        found = self.at(town_db).show(bead_id)
        if found is None:
            found = self.show(bead_id)
        return agent_from_json(found) if found else None

    def polecat_hook_l(self, bead_id: str, assignee: str, town_db: Path, rig_db: Path) -> str:
        """[L] a polecat's work now: its agent bead's ``hook_bead`` column when bd still has
        one, else the issue assigned to it (``hooked``/``in_progress``) in its rig's DB;
        ``""`` for none (also when it has no agent bead). ToolError when unknown."""
        bead = self.agent_l(bead_id, town_db)
        if bead is None:
            return ""
        if bead.hook_column:
            return bead.hook_column
        found = assigned_work(self.at(rig_db).work_in_progress()).get(assignee)
        return found[0] if found else ""

    def work_in_progress(self) -> list[dict[str, Any]]:
        """[L] §4.2 ``hasAssignedOpenWork`` for a whole database in one call: the issues
        ``hooked`` or ``in_progress`` (bd ≥ 1.0 takes a comma list; ``--assignee`` takes one
        name only, so the assignees are told apart by :func:`assigned_work`)."""
        return self._json("list", "--status=hooked,in_progress", "--json", "--flat",
                          "--limit", "0") or []

    def any_in_progress(self) -> bool:
        """Does this database hold some ``in_progress`` issue ([L] §6.3 nudge gate)?"""
        return bool(self._json("list", "--status=in_progress", "--json", "--flat",
                               "--limit", "1"))

    def ready(self) -> list[dict[str, Any]]:
        """Every ready issue of this database, untruncated (the default limit is 10, §5.1)."""
        return self._json("ready", "--json", "--limit", "0") or []
