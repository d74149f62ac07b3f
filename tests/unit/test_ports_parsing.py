"""Pure parsers of the ports: tmux listings, bd output variants, gt mail inboxes."""

from __future__ import annotations

import json

import pytest

from gastown_units.ports.beads import agent_from_json, parse_issue_list
from gastown_units.ports.mail import parse_inbox
from gastown_units.ports.tmux import Tmux, parse_panes
from gastown_units.runtime.notify import watchdog_period


def test_parse_panes() -> None:
    snap = parse_panes("hq-deacon\t42\tnode\t0\t1700000000\t1\t%1\n"
                       "gt-boot\t43\tbash\t1\t1700000001\t0\t%2\nbroken line\n")
    assert snap.sessions == {"hq-deacon", "gt-boot"}
    assert snap.first_pane("gt-boot").dead is True
    assert snap.first_pane("hq-deacon").attached == 1
    assert snap.first_pane("nope") is None
    assert snap.pane_by_id("gt-boot", "%2") is snap.first_pane("gt-boot")


def test_tmux_argv_never_starts_a_server() -> None:
    assert Tmux(socket="gt").argv("list-panes") == ["tmux", "-N", "-u", "-L", "gt",
                                                    "list-panes"]
    assert Tmux().argv("ls") == ["tmux", "-N", "-u", "ls"]


@pytest.mark.parametrize("stdout", ["", "  \n", "[]", "null"])
def test_no_issue_shapes(stdout: str) -> None:
    assert parse_issue_list(stdout) is None


@pytest.mark.parametrize(("stdout", "message"), [
    ('{"error": "no issues found matching the provided IDs", "schema_version": 1}',
     "no issues found matching the provided IDs"),
    ('{"schema_version":1,"data":{"error":"x"}}', "x"),
])
def test_error_objects_are_returned_for_the_caller_to_judge(stdout: str, message: str) -> None:
    assert parse_issue_list(stdout) == message


def test_agent_fields_from_columns_then_description() -> None:
    obj = {"id": "gt-gastown-polecat-nux", "status": "open", "labels": ["gt:agent"],
           "description": "Polecat nux\n\nrole_type: polecat\nagent_state: working\n"
                          "hook_bead: gt-old\nactive_mr: null"}
    assert agent_from_json(obj).hook_bead == "gt-old"
    assert agent_from_json({**obj, "hook_bead": "gt-new"}).hook_bead == "gt-new"
    assert agent_from_json(obj).agent_state == "working"
    env = json.dumps({"schema_version": 1, "data": [obj]})
    assert parse_issue_list(env)[0]["id"] == "gt-gastown-polecat-nux"


def test_inbox_shapes() -> None:
    assert parse_inbox("") == [] and parse_inbox("null") == [] and parse_inbox("[]") == []
    msgs = parse_inbox(json.dumps([{
        "id": "hq-1", "from": "gastown/witness", "to": "deacon/",
        "subject": "LIFECYCLE: gastown/witness requesting cycle", "body": '{"action":"cycle"}',
        "timestamp": "2026-01-25T18:38:59.123456789-08:00", "read": False}]))
    assert msgs[0].sender == "gastown/witness" and msgs[0].timestamp is not None
    with pytest.raises(ValueError):
        parse_inbox('{"id": 1}')


def test_watchdog_period() -> None:
    assert watchdog_period({}) is None
    assert watchdog_period({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_period({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert watchdog_period({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "7"}, pid=7) == 2.0
