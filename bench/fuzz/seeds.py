"""Example inputs to mutate: the shapes Gas Town and beads write (January and mid-2026
towns; see tests/standins/README.md) and what the services write themselves.

Kept here, not read from anywhere at run time, so that a seed gives the same inputs on
every machine.
"""

from __future__ import annotations

from typing import Any

POLECAT_BEAD: dict[str, Any] = {
    "id": "gt-gastown-polecat-nux", "title": "gt-gastown-polecat-nux",
    "description": "gt-gastown-polecat-nux\n\nrole_type: polecat\nrig: gastown\n"
                   "agent_state: working\nhook_bead: gt-a1b2c\ncleanup_status: null\n"
                   "active_mr: null\nnotification_level: null",
    "status": "open", "priority": 2, "issue_type": "agent",
    "created_at": "2026-01-20T09:14:03.123456-08:00", "created_by": "mayor",
    "updated_at": "2026-01-25T16:02:11.987654-08:00", "hook_bead": "gt-a1b2c",
    "role_bead": "gt-polecat-role", "agent_state": "working",
    "last_activity": "2026-01-25T16:02:11.987654-08:00", "role_type": "polecat",
    "rig": "gastown", "labels": ["gt:agent", "rig:gastown", "role_type:polecat"]}

WITNESS_BEAD: dict[str, Any] = {
    "id": "gt-gastown-witness", "title": "gt-gastown-witness",
    "description": "gt-gastown-witness\n\nrole_type: witness\nrig: gastown\n"
                   "agent_state: running\nhook_bead: null",
    "status": "pinned", "priority": 2, "issue_type": "agent", "assignee": "gastown/witness",
    "owner": "dev@example.com", "created_at": "2026-01-10T08:00:00.000001-08:00",
    "created_by": "mayor", "updated_at": "2026-01-25T16:02:11.9-08:00",
    "labels": ["gt:agent", "rig:gastown", "role_type:witness"],
    "dependencies": [{"issue_id": "gt-gastown-witness", "depends_on_id": "gt-witness-role",
                      "type": "related", "created_at": "2026-01-10T08:00:01-08:00",
                      "created_by": "mayor"}],
    "role_bead": "gt-witness-role", "agent_state": "running",
    "last_activity": "2026-01-25T16:02:11.9-08:00", "role_type": "witness", "rig": "gastown"}

TASK: dict[str, Any] = {
    "id": "bd-az0m", "title": "Issue 1", "status": "closed", "priority": 1,
    "issue_type": "task", "created_at": "2025-11-22T14:57:44.52134201-05:00",
    "updated_at": "2025-11-22T14:57:44.52134201-05:00",
    "closed_at": "2025-11-07T21:55:09.42865-08:00",
    "dependencies": [{"issue_id": "bd-az0m", "depends_on_id": "bd-bvo2", "type": "related",
                      "created_at": "2025-11-07T19:07:21.069031-08:00", "created_by": "daemon"}]}

READY: dict[str, Any] = {"id": "gt-a1b2c", "title": "Fix login", "status": "open",
                         "priority": 1, "issue_type": "task", "labels": []}

# bd output as a whole (beads.md §2.4, §9): arrays, error objects, the N envelope.
BD_OUTPUTS: tuple[Any, ...] = (
    [POLECAT_BEAD], [WITNESS_BEAD], [TASK, READY], [], None, POLECAT_BEAD,
    {"error": "resolving ID gt-x: operation failed: failed to resolve ID: "
              "no issue found matching \"gt-x\""},
    {"error": "no issues found matching the provided IDs", "schema_version": 1},
    {"schema_version": 1, "data": [POLECAT_BEAD]},
    {"schema_version": 1, "data": {"error": "no issues found matching the provided IDs"}},
    {"agent": "gt-gastown-polecat-nux", "slots": {"hook": "gt-a1b2c", "role": None}},
)

MESSAGE: dict[str, Any] = {
    "id": "hq-abc12", "from": "gastown/witness", "to": "deacon/",
    "subject": "LIFECYCLE: gastown/witness requesting cycle", "body": "{\"action\":\"cycle\"}",
    "timestamp": "2026-01-25T18:38:59.123456-08:00", "read": False, "priority": "normal",
    "type": "notification", "delivery": "queue", "thread_id": "thread-1a2b", "reply_to": "x",
    "pinned": False, "wisp": True, "cc": ["mayor/"], "queue": "q", "channel": "c",
    "claimed_by": "", "claimed_at": ""}

SHUTDOWN_MESSAGE: dict[str, Any] = {
    "id": "hq-sd1", "from": "gastown/nux", "to": "gastown/witness",
    "subject": "LIFECYCLE: gastown/polecats/nux requesting shutdown",
    "body": "polecat: nux\nreason: done", "timestamp": "2026-01-25T10:00:00-08:00",
    "read": False}

INBOXES: tuple[Any, ...] = (
    [MESSAGE], [MESSAGE, SHUTDOWN_MESSAGE], [], None,
    [{"id": "hq-abc12", "from": "mayor/", "to": "gastown/Toast", "subject": "Rebase needed",
      "body": "...", "timestamp": "2026-01-25T10:00:00-08:00", "read": False,
      "priority": "normal", "type": "notification", "thread_id": "thread-1a2b3c4d5e6f",
      "reply_to": "hq-xyz98"}],
)

RIGS_JSON: dict[str, Any] = {"version": 1, "rigs": {"gastown": {
    "git_url": "git@github.com:steveyegge/gastown.git", "local_repo": "/optional/reference/repo",
    "added_at": "2026-01-05T10:00:00-08:00", "beads": {"repo": "", "prefix": "gt"}}}}

TOWN_JSON: dict[str, Any] = {"type": "town", "version": 2, "name": "testtown",
                             "owner": "test@example.com", "public_name": "Test",
                             "created_at": "2026-01-25T18:00:00Z"}

ROUTES: tuple[Any, ...] = ({"prefix": "hq-", "path": "."},
                           {"prefix": "gt-", "path": "gastown/mayor/rig"},
                           {"prefix": "bd-", "path": "beads/mayor/rig/"})

HEARTBEAT: dict[str, Any] = {"timestamp": "2026-01-02T18:30:00Z", "cycle": 42,
                             "last_action": "health-scan", "healthy_agents": 3,
                             "unhealthy_agents": 0}

WISP: dict[str, Any] = {"rig": "gastown", "values": {"status": "parked", "auto_restart": False},
                        "blocked": ["auto_restart"]}

DAEMON_JSON: dict[str, Any] = {
    "type": "daemon-patrol-config", "version": 1,
    "heartbeat": {"enabled": True, "interval": "3m"},
    "patrols": {"deacon": {"enabled": True, "interval": "5m", "agent": "deacon"},
                "witness": {"enabled": True}, "refinery": {"enabled": False},
                "dolt_server": {"enabled": False, "port": 3306}}}

SETTINGS: tuple[Any, ...] = (
    {"default_agent": "claude", "role_agents": {"witness": "codex", "polecat": "mine"},
     "agents": {"mine": {"command": "/usr/bin/mine", "args": ["--yes"], "prompt_mode": "none",
                         "ready_prompt_prefix": "> ", "ready_delay_ms": 2500,
                         "tmux": {"ready_delay_ms": 100}}}},
    {"runtime": "opencode"}, {"agent": "gemini"}, {},
    {"agents": {"claude": {"command": "claude", "args": []}}},
)

SHUTDOWN_MARK: dict[str, Any] = {"session": "gt-gastown-nux", "at": "2026-01-25T18:00:00Z",
                                 "by": "gastown/witness", "hook_bead": "gt-a1b2c",
                                 "request": "hq-sd1"}

RESTARTS: dict[str, Any] = {"agents": {"gt-gastown-nux": {
    "last_restart": "2026-01-25T18:00:00.123456789Z", "restart_count": 2,
    "backoff_until": "2026-01-25T18:01:00Z", "crash_loop_since": "0001-01-01T00:00:00Z",
    "window_start": "2026-01-25T17:59:00Z"}}}

SWEEP_STATE: dict[str, Any] = {"incidents": {"gupp:gt-gastown-polecat-nux": "gt-a1b2c"},
                               "dead": {"gt-gastown-nux": "gt-a1b2c"},
                               "deaths": [[1769364000.0, "gt-gastown-nux"]]}

BOOK: dict[str, Any] = {"gt-a1b2c": {"failures": 2, "last": 1769364000.0, "ok": False},
                        "gt-b2": {"failures": 0, "last": 1769364000, "ok": True}}

LADDER: dict[str, Any] = {"step": 1, "activity": 1769364000.0, "at": 1769364600.0}

AGENT_STATE: dict[str, Any] = {"requesting_cycle": True,
                               "requesting_time": "2026-01-25T18:00:00Z", "role": "witness"}

GIT_FILES: tuple[str, ...] = ("gitdir: /srv/gastown.git/worktrees/nux\n",
                              "gitdir: ../../.repo.git/worktrees/nux", "gitdir:", "")

# Tool output of tmux (list-panes in the port's format, list-sessions, the server probe).
PANES: tuple[str, ...] = (
    "hq-deacon\t42\tnode\t0\t1700000000\t0\t%0\n",
    "gt-gastown-witness\t4242\tclaude\t0\t1769364000\t1\n"
    "gt-gastown-nux\t99\tbash\t1\t1769364000.5\t\n",
    "", "no server running on /tmp/tmux-0/x\n",
)

ALL_JSON: tuple[Any, ...] = (
    POLECAT_BEAD, WITNESS_BEAD, TASK, READY, MESSAGE, SHUTDOWN_MESSAGE, RIGS_JSON, TOWN_JSON,
    HEARTBEAT, WISP, DAEMON_JSON, SHUTDOWN_MARK, RESTARTS, SWEEP_STATE, BOOK, LADDER,
    AGENT_STATE, *ROUTES, *SETTINGS, *BD_OUTPUTS, *INBOXES,
)
