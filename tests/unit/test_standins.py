"""Tests for the stand-in ``bd``, ``gt`` and ``agent`` executables (tests/standins/)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

STANDINS = Path(__file__).resolve().parents[1] / "standins"
BD = STANDINS / "bd"
GT = STANDINS / "gt"
AGENT = STANDINS / "agent"

ISOLATE = ("GT_", "BD_", "BEADS_", "STANDIN_", "CLAUDE")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ISOLATE)}
    env.pop("USER", None)
    env.update(extra)
    return env


def run(tool, *args, cwd, env=None, timeout=20, input=None):
    """Run a stand-in with the interpreter under test (not via the shebang)."""
    return subprocess.run(
        [sys.executable, str(tool), *map(str, args)],
        cwd=str(cwd),
        env=clean_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


@pytest.fixture
def town(tmp_path: Path) -> Path:
    root = tmp_path / "town"
    (root / "mayor").mkdir(parents=True)
    (root / "mayor" / "town.json").write_text('{"type":"town","version":2,"name":"t"}\n')
    (root / ".beads").mkdir()
    (root / ".beads" / "config.yaml").write_text('issue-prefix: "hq"\n')  # as bd init
    return root


def bd(town, *args, **kw):
    return run(BD, *args, cwd=kw.pop("cwd", town), **kw)


def gt(town, *args, **kw):
    return run(GT, *args, cwd=kw.pop("cwd", town), **kw)


def bd_json(town, *args, **kw):
    r = bd(town, *args, "--json", **kw)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def create(town, title="t", *extra, **kw) -> dict:
    return bd_json(town, "create", f"--title={title}", *extra, **kw)


def seed(town, *issues: dict) -> None:
    path = town / ".beads" / "issues.jsonl"
    with path.open("a") as f:
        for i in issues:
            base = {
                "status": "open",
                "priority": 2,
                "issue_type": "task",
                "created_at": "2026-01-20T09:14:03.123456-08:00",
                "updated_at": "2026-01-20T09:14:03.123456-08:00",
            }
            f.write(json.dumps({**base, **i}) + "\n")


def calls(town, tool=None) -> list[dict]:
    path = town / ".standin" / "calls.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if tool is None or r["tool"] == tool]


def knob(town, name, text=""):
    (town / ".standin").mkdir(exist_ok=True)
    (town / ".standin" / name).write_text(text)


# ---------------------------------------------------------------------------
# bd: create / show
# ---------------------------------------------------------------------------


def test_scripts_are_executable_with_shebang(town):
    for p in (BD, GT, AGENT):
        assert p.stat().st_mode & stat.S_IXUSR
        assert p.read_text().startswith("#!/usr/bin/env python3\n")
    r = subprocess.run(
        [str(BD), "version"], cwd=town, env=clean_env(), capture_output=True, text=True,
        timeout=20,
    )  # fmt: skip
    assert r.returncode == 0 and "bd version" in r.stdout


def test_create_json_is_one_object_with_generated_id(town):
    r = bd(town, "create", "--json", "--title=Fix login", "--type", "bug", "-p", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("}\n") and r.stdout.startswith("{\n  ")
    obj = json.loads(r.stdout)
    assert isinstance(obj, dict)
    assert re.fullmatch(r"hq-[0-9a-z]{5}", obj["id"])
    assert obj["title"] == "Fix login" and obj["issue_type"] == "bug" and obj["priority"] == 1
    assert obj["status"] == "open"
    for k in ("id", "title", "priority", "created_at", "updated_at"):
        assert k in obj
    for k in ("description", "assignee", "closed_at", "labels", "hook_bead", "ephemeral"):
        assert k not in obj  # omitempty: absent, never null


def test_create_uses_configured_prefix_and_silent(town):
    (town / ".beads" / "config.yaml").write_text('issue-prefix: "gt"\n')
    r = bd(town, "create", "Hello", "--silent")
    assert r.returncode == 0
    assert re.fullmatch(r"gt-[0-9a-z]{5}\n", r.stdout)


def test_create_multi_hyphen_rule(town):
    r = bd(town, "create", "--id=hq-mayor-role", "--title=Mayor role", "--type=role")
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.startswith("Error: prefix mismatch")
    rj = bd(town, "create", "--json", "--id=hq-mayor-role", "--title=x")
    assert rj.returncode == 1 and "prefix mismatch" in json.loads(rj.stdout)["error"]
    ok = bd(town, "create", "--json", "--id=hq-mayor-role", "--title=x", "--type=role", "--force")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["id"] == "hq-mayor-role"
    one = bd(town, "create", "--json", "--id=hq-abc12", "--title=single hyphen")
    assert one.returncode == 0, one.stderr
    dup = bd(town, "create", "--id=hq-abc12", "--title=again")
    assert dup.returncode == 1 and "UNIQUE" in dup.stderr


def test_create_agent_bead_gastown_style(town):
    desc = "gt-gastown-polecat-nux\n\nrole_type: polecat\nrig: gastown\nagent_state: spawning"
    obj = create(
        town, "gt-gastown-polecat-nux", "--id=gt-gastown-polecat-nux", f"--description={desc}",
        "--type=agent", "--labels=gt:agent", "--force", "--actor=mayor",
    )  # fmt: skip
    assert obj["issue_type"] == "agent"
    assert obj["role_type"] == "polecat" and obj["rig"] == "gastown"
    assert obj["created_by"] == "mayor"
    assert obj["labels"] == ["gt:agent", "rig:gastown", "role_type:polecat"]
    bad = bd(town, "create", "--id=gt-nonsense", "--title=x", "--type=agent")
    assert bad.returncode == 1 and "invalid agent ID" in bad.stderr
    (town / ".beads" / "config.yaml").write_text('types.custom: "role"\n')
    r = bd(town, "create", "--title=x", "--type=agent")
    assert r.returncode == 1 and "invalid issue type: agent" in r.stderr


def test_show_returns_array_even_for_one_id(town):
    a = create(town, "A", "--labels=z,a", "--description=body")
    r = bd(town, "show", a["id"], "--json")
    assert r.returncode == 0
    assert r.stdout.startswith("[\n  {\n    ") and r.stdout.endswith("]\n")
    arr = json.loads(r.stdout)
    assert isinstance(arr, list) and len(arr) == 1
    assert arr[0]["id"] == a["id"] and arr[0]["labels"] == ["a", "z"]
    assert arr[0]["description"] == "body"


def test_show_missing_o_mode_is_empty_stdout_exit_0(town):
    r = bd(town, "show", "hq-nope1", "--json")
    assert r.returncode == 0
    assert r.stdout == ""
    assert r.stderr.strip() == 'Error fetching hq-nope1: no issue found matching "hq-nope1"'


def test_show_mixed_found_and_missing(town):
    a = create(town, "A")
    r = bd(town, "show", a["id"], "hq-zzzzz", "--json")
    assert r.returncode == 0
    assert [d["id"] for d in json.loads(r.stdout)] == [a["id"]]
    assert 'Error fetching hq-zzzzz: no issue found matching "hq-zzzzz"' in r.stderr


def test_show_missing_n_mode(town):
    knob(town, "bd.mode", "N\n")
    r = bd(town, "show", "hq-nope1", "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout) == {
        "error": "no issues found matching the provided IDs",
        "schema_version": 1,
    }
    assert "Error fetching hq-nope1" in r.stderr
    a = create(town, "A")
    ok = bd(town, "show", a["id"], "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)[0]["id"] == a["id"]
    upd = bd(town, "update", "hq-nope1", "--status=open")
    assert upd.returncode == 1


def test_show_missing_daemon_mode(town):
    """beads.md §2.4, O daemon mode: the ID is resolved through RPC first; a miss is a JSON
    error on stdout, exit 1, and the remaining IDs are not shown."""
    knob(town, "bd.mode", "daemon\n")
    a = create(town, "A")
    r = bd(town, "show", "hq-nope1", a["id"], "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout) == {"error": 'resolving ID hq-nope1: operation failed: failed '
                                    'to resolve ID: no issue found matching "hq-nope1"'}
    plain = bd(town, "show", "hq-nope1")
    assert plain.returncode == 1 and plain.stderr.startswith("Error: resolving ID hq-nope1")
    ok = bd(town, "show", a["id"], "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)[0]["id"] == a["id"]


def test_id_resolution(town):
    seed(
        town,
        {"id": "hq-abc12", "title": "one"},
        {"id": "hq-abd34", "title": "two"},
        {"id": "hq-deacon-role", "title": "role"},
        {"id": "gt-gastown-witness", "title": "w", "issue_type": "agent"},
    )
    # exact
    assert bd_json(town, "show", "gt-gastown-witness")[0]["id"] == "gt-gastown-witness"
    # prefix-normalised
    assert bd_json(town, "show", "abc12")[0]["id"] == "hq-abc12"
    # unique substring (even when another issue was meant)
    assert bd_json(town, "show", "hq-deacon")[0]["id"] == "hq-deacon-role"
    assert bd_json(town, "show", "c12")[0]["id"] == "hq-abc12"
    # ambiguous
    r = bd(town, "show", "ab", "--json")
    assert r.returncode == 0 and r.stdout == ""
    assert 'ambiguous ID "ab" matches 2 issues: [hq-abc12 hq-abd34]' in r.stderr


def test_show_details_relations(town):
    parent = create(town, "Epic", "--type=epic")
    child = create(town, "Child", f"--parent={parent['id']}")
    assert child["id"] == parent["id"] + ".1"
    d = bd_json(town, "show", child["id"])[0]
    assert d["parent"] == parent["id"]
    assert d["dependencies"][0]["id"] == parent["id"]
    assert d["dependencies"][0]["dependency_type"] == "parent-child"
    p = bd_json(town, "show", parent["id"])[0]
    assert p["dependents"][0]["id"] == child["id"]


# ---------------------------------------------------------------------------
# bd: list / ready
# ---------------------------------------------------------------------------


def test_list_filters_and_defaults(town):
    seed(
        town,
        {"id": "hq-a0001", "title": "open task", "labels": ["x", "y"], "assignee": "mayor/"},
        {"id": "hq-a0002", "title": "closed", "status": "closed",
         "closed_at": "2026-01-21T00:00:00Z"},
        {"id": "hq-a0003", "title": "msg", "issue_type": "message", "labels": ["x"]},
        {"id": "hq-a0004", "title": "hooked", "status": "hooked", "assignee": "gastown/nux"},
    )  # fmt: skip
    ids = lambda rows: sorted(r["id"] for r in rows)  # noqa: E731
    assert ids(bd_json(town, "list")) == ["hq-a0001", "hq-a0003", "hq-a0004"]
    assert ids(bd_json(town, "list", "--all")) == ["hq-a0001", "hq-a0002", "hq-a0003", "hq-a0004"]
    assert ids(bd_json(town, "list", "--status=closed")) == ["hq-a0002"]
    assert ids(bd_json(town, "list", "--status", "all")) == [
        "hq-a0001", "hq-a0002", "hq-a0003", "hq-a0004",
    ]  # fmt: skip
    assert ids(bd_json(town, "list", "--type=message")) == ["hq-a0003"]
    assert ids(bd_json(town, "list", "--type", "message", "--limit", "0")) == ["hq-a0003"]
    assert ids(bd_json(town, "list", "--label", "x")) == ["hq-a0001", "hq-a0003"]
    assert ids(bd_json(town, "list", "--labels", "x,y")) == ["hq-a0001"]
    assert ids(bd_json(town, "list", "-l", "x", "-l", "y")) == ["hq-a0001"]
    assert ids(bd_json(town, "list", "--assignee", "gastown/nux")) == ["hq-a0004"]
    assert len(bd_json(town, "list", "--limit=1")) == 1
    row = bd_json(town, "list", "--id", "hq-a0001")[0]
    assert row["dependency_count"] == 0 and row["dependent_count"] == 0
    assert bd_json(town, "list", "--label", "nothing") == []
    # O: --status takes one value; N accepts comma-separated values
    assert bd_json(town, "list", "--status=open,hooked") == []
    knob(town, "bd.mode", "N")
    assert ids(bd_json(town, "list", "--status=open,hooked")) == [
        "hq-a0001", "hq-a0004",
    ]  # fmt: skip  (N hides the message: an infra type, beads.md §9.7)


def test_list_default_limit_50(town):
    seed(town, *({"id": f"hq-l{n:04d}", "title": str(n)} for n in range(60)))
    assert len(bd_json(town, "list")) == 50
    assert len(bd_json(town, "list", "--limit", "0")) == 60
    assert len(bd_json(town, "list", env={"BD_AGENT_MODE": "1"})) == 20


def test_ready(town):
    assert bd(town, "ready", "--json").stdout == "[]\n"
    seed(
        town,
        {"id": "hq-r0001", "title": "ready", "priority": 1},
        {"id": "hq-r0002", "title": "hooked", "status": "hooked"},
        {"id": "hq-r0003", "title": "msg", "issue_type": "message"},
        {"id": "hq-r0004", "title": "agent", "issue_type": "agent"},
        {"id": "hq-r0005", "title": "pinned", "status": "pinned", "pinned": True},
        {"id": "hq-r0006", "title": "blocked",
         "dependencies": [{"issue_id": "hq-r0006", "depends_on_id": "hq-r0001",
                           "type": "blocks"}]},
        {"id": "hq-r0007", "title": "wisp", "ephemeral": True},
        {"id": "hq-r0008", "title": "in progress", "status": "in_progress", "priority": 0},
        {"id": "hq-r0009", "title": "closed", "status": "closed"},
    )  # fmt: skip
    rows = bd_json(town, "ready")
    assert [r["id"] for r in rows] == ["hq-r0008", "hq-r0001"]
    assert "dependency_count" not in rows[0]
    bd(town, "close", "hq-r0001")
    assert [r["id"] for r in bd_json(town, "ready")] == ["hq-r0008", "hq-r0006"]


# ---------------------------------------------------------------------------
# bd: update / close / reopen / label
# ---------------------------------------------------------------------------


def test_update_forms_and_output(town):
    a = create(town, "A")
    r = bd(town, "update", a["id"], "--status=hooked", "--assignee", "gastown/polecats/nux")
    assert r.returncode == 0 and r.stdout.strip() == f"✓ Updated issue: {a['id']}"
    arr = bd_json(town, "update", a["id"], "--description", "new body", "--title=T2")
    assert isinstance(arr, list) and arr[0]["description"] == "new body"
    d = bd_json(town, "show", a["id"])[0]
    assert d["status"] == "hooked" and d["assignee"] == "gastown/polecats/nux"
    assert d["title"] == "T2"
    bd(town, "--no-daemon", "update", a["id"], "--status=open", "--assignee=")
    d = bd_json(town, "show", a["id"])[0]
    assert d["status"] == "open" and "assignee" not in d


def test_update_errors_o_mode(town):
    a = create(town, "A")
    r = bd(town, "update", "hq-nope1", "--status=open")
    assert r.returncode == 0 and r.stdout == ""
    assert 'Error resolving hq-nope1: no issue found matching "hq-nope1"' in r.stderr
    r = bd(town, "update", a["id"])
    assert r.returncode == 0 and r.stdout.strip() == "No updates specified"
    r = bd(town, "update", a["id"], "--status=bogus")
    assert r.returncode == 0 and "invalid status" in r.stderr
    r = bd(town, "update", a["id"], "--type=agent")
    assert r.returncode == 1 and 'invalid issue type "agent"' in r.stderr


def test_close_reopen_closed_at_invariant(town):
    a = create(town, "A")
    arr = bd_json(town, "close", a["id"], "--reason", "done")
    assert arr[0]["status"] == "closed" and arr[0]["close_reason"] == "done"
    assert arr[0]["closed_at"]
    assert bd_json(town, "list") == []
    arr = bd_json(town, "reopen", a["id"], "--reason=re-spawning agent")
    assert arr[0]["status"] == "open"
    assert "closed_at" not in arr[0] and "close_reason" not in arr[0]
    bd(town, "update", a["id"], "--status", "closed")
    assert bd_json(town, "show", a["id"])[0]["closed_at"]
    r = bd(town, "close", "hq-nope1")
    assert r.returncode == 0 and "Error resolving hq-nope1" in r.stderr


def test_label_add_remove(town):
    a = create(town, "A")
    bd(town, "label", "add", a["id"], "read")
    assert bd_json(town, "show", a["id"])[0]["labels"] == ["read"]
    bd(town, "label", "remove", a["id"], "read")
    assert "labels" not in bd_json(town, "show", a["id"])[0]


# ---------------------------------------------------------------------------
# bd: agent / slot
# ---------------------------------------------------------------------------


def test_agent_state_autocreates_task(town):
    r = bd(town, "agent", "state", "gt-gastown-witness", "RUNNING", "--json")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert set(obj) == {"agent", "agent_state", "last_activity"}
    assert obj["agent"] == "gt-gastown-witness" and obj["agent_state"] == "running"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", obj["last_activity"])
    d = bd_json(town, "show", "gt-gastown-witness")[0]
    assert d["issue_type"] == "task" and d["title"] == "Agent: gt-gastown-witness"
    assert d["labels"] == ["gt:agent", "rig:gastown", "role_type:witness"]
    assert d["agent_state"] == "running" and d["role_type"] == "witness"
    assert d["rig"] == "gastown" and d["last_activity"]
    txt = bd(town, "agent", "state", "gt-gastown-witness", "idle")
    assert txt.stdout.strip() == "✓ gt-gastown-witness state=idle"
    hb = bd_json(town, "agent", "heartbeat", "gt-gastown-witness")
    assert set(hb) == {"agent", "last_activity"}
    show = bd_json(town, "agent", "show", "gt-gastown-witness")
    assert show["hook_bead"] is None and show["agent_state"] == "idle"


def test_agent_state_errors_print_usage(town):
    r = bd(town, "agent", "state", "gt-gastown-witness", "bogus")
    assert r.returncode == 1
    assert r.stderr.startswith('Error: invalid state "bogus"; valid states: idle, spawning,')
    assert "Usage:\n  bd agent state <agent> <state>" in r.stderr
    plain = create(town, "not an agent")
    r = bd(town, "agent", "state", plain["id"], "idle")
    assert r.returncode == 1
    assert f"Error: {plain['id']} is not an agent bead (missing gt:agent label)" in r.stderr
    assert "Usage:" in r.stderr
    r = bd(town, "agent", "heartbeat", "hq-missing-agent")
    assert r.returncode == 1 and "failed to resolve agent" in r.stderr


def test_slot_set_show_clear(town):
    agent = create(
        town, "gt-gastown-polecat-nux", "--id=gt-gastown-polecat-nux", "--type=agent",
        "--labels=gt:agent", "--force",
    )  # fmt: skip
    work = create(town, "work")
    other = create(town, "other")
    aid = agent["id"]
    assert bd_json(town, "slot", "show", aid) == {
        "agent": aid, "slots": {"hook": None, "role": None},
    }  # fmt: skip
    assert bd_json(town, "slot", "set", aid, "hook", work["id"]) == {
        "agent": aid, "slot": "hook", "bead": work["id"],
    }  # fmt: skip
    assert bd_json(town, "show", aid)[0]["hook_bead"] == work["id"]
    r = bd(town, "slot", "set", aid, "hook", other["id"])
    assert r.returncode == 1
    assert r.stderr.startswith(
        f"Error: hook slot already occupied by {work['id']}; use 'bd slot clear {aid} hook' first\n"
    )
    assert "Usage:\n  bd slot set" in r.stderr
    assert bd_json(town, "slot", "clear", aid, "hook") == {"agent": aid, "slot": "hook",
                                                          "bead": None}  # fmt: skip
    assert "hook_bead" not in bd_json(town, "show", aid)[0]
    # slot checks issue_type == agent, so an auto-created (task) agent is refused
    bd(town, "agent", "state", "gt-gastown-refinery", "idle")
    r = bd(town, "slot", "show", "gt-gastown-refinery")
    assert r.returncode == 1
    assert "gt-gastown-refinery is not an agent bead (type=task)" in r.stderr


# ---------------------------------------------------------------------------
# bd: CLI plumbing, call log, faults, concurrency, discovery
# ---------------------------------------------------------------------------


def test_unknown_command_and_flag(town):
    r = bd(town, "frobnicate")
    assert r.returncode == 1
    assert r.stderr.startswith('Error: unknown command "frobnicate" for "bd"')
    r = bd(town, "list", "--bogus")
    assert r.returncode == 1 and r.stderr.startswith("Error: unknown flag: --bogus")


def test_global_flags_accepted_anywhere(town):
    a = create(town, "A", "--no-daemon", "--allow-stale", "--actor=deacon")
    assert a["created_by"] == "deacon"
    r = bd(town, "--no-daemon", "--allow-stale", "--actor", "x", "show", a["id"], "--json")
    assert r.returncode == 0 and json.loads(r.stdout)[0]["id"] == a["id"]


def test_actor_from_env(town):
    a = create(town, "A", env={"BD_ACTOR": "gastown/witness", "BEADS_ACTOR": "nope"})
    assert a["created_by"] == "gastown/witness"


def test_call_log(town):
    env = {"GT_ROLE": "deacon", "BD_ACTOR": "deacon", "GT_ROOT": str(town), "OTHER": "x"}
    bd(town, "list", "--json", env=env)
    gt(town, "mail", "inbox", "--json", env=env)
    rows = calls(town)
    assert [r["tool"] for r in rows] == ["bd", "gt"]
    assert rows[0]["argv"] == ["list", "--json"]
    assert rows[0]["cwd"] == str(town)
    assert rows[0]["env"] == {"GT_ROLE": "deacon", "BD_ACTOR": "deacon", "GT_ROOT": str(town)}
    assert rows[0]["ts"]


def test_fail_injection(town):
    knob(town, "bd.fail", "database is locked\n")
    r = bd(town, "list", "--json")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "Error: database is locked\n"
    (town / ".standin" / "bd.fail").write_text("")
    assert bd(town, "list").stderr == "Error: injected failure\n"
    assert len(calls(town, "bd")) == 2  # failed calls are still logged
    (town / ".standin" / "bd.fail").unlink()
    knob(town, "bd.fail.show")
    assert bd(town, "list", "--json").returncode == 0
    assert bd(town, "show", "x", "--json").returncode == 1
    knob(town, "gt.fail", "boom")
    r = gt(town, "mail", "inbox", "--json")
    assert r.returncode == 1 and r.stderr == "Error: boom\n"


@pytest.mark.parametrize("tool", ["bd", "gt"])
def test_hang_injection(town, tool):
    knob(town, f"{tool}.hang")
    with pytest.raises(subprocess.TimeoutExpired) as ei:
        run(BD if tool == "bd" else GT, "list" if tool == "bd" else "mail", cwd=town, timeout=1.5)
    assert not ei.value.stdout
    assert len(calls(town, tool)) == 1


def test_delay_knob(town):
    knob(town, "bd.delay", "0.6")
    t0 = time.monotonic()
    assert bd(town, "list", "--json").returncode == 0
    assert time.monotonic() - t0 >= 0.6


def test_concurrent_creates_do_not_lose_writes(town):
    procs = [
        subprocess.Popen(
            [sys.executable, str(BD), "create", f"--title=c{n}", "--silent"],
            cwd=town,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for n in range(12)
    ]
    for p in procs:
        p.communicate(timeout=30)
        assert p.returncode == 0
    assert len(bd_json(town, "list", "--limit=0")) == 12
    lines = (town / ".beads" / "issues.jsonl").read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    assert ids == sorted(ids) and len(ids) == 12
    assert all(": " not in line.split('"title"')[0] for line in lines)  # compact JSON


def test_town_discovery(town, tmp_path):
    sub = town / "gastown" / "polecats" / "nux"
    sub.mkdir(parents=True)
    a = create(town, "A")
    assert bd_json(town, "show", a["id"], cwd=sub)[0]["id"] == a["id"]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    r = bd(town, "show", a["id"], "--json", cwd=outside)
    assert r.returncode == 1 and "no beads database found" in r.stderr
    # beads.md §7.1: the database is found from BEADS_DIR or the cwd, never from the town
    # root Gas Town knows about.
    r = bd(town, "show", a["id"], "--json", cwd=outside, env={"GT_TOWN_ROOT": str(town)})
    assert r.returncode == 1 and "no beads database found" in r.stderr
    r = bd(town, "show", a["id"], "--json", cwd=outside,
           env={"BEADS_DIR": str(town / ".beads")})
    assert r.returncode == 0 and json.loads(r.stdout)[0]["id"] == a["id"]
    r = bd(town, "show", a["id"], "--json", cwd=outside, env={"BD_STANDIN_TOWN": str(town)})
    assert r.returncode == 0
    r = gt(town, "mail", "inbox", cwd=outside)
    assert r.returncode == 1 and "not in a Gas Town workspace" in r.stderr


# ---------------------------------------------------------------------------
# gt mail
# ---------------------------------------------------------------------------

WITNESS_ENV = {"GT_ROLE": "witness", "GT_RIG": "gastown", "BD_ACTOR": "gastown/witness"}


def test_inbox_empty_is_null(town):
    r = gt(town, "mail", "inbox", "--identity", "deacon/", "--json")
    assert r.returncode == 0 and r.stdout == "null\n"


def test_mail_round_trip(town):
    r = gt(
        town, "mail", "send", "deacon/", "-s", "LIFECYCLE: gastown/witness requesting cycle",
        "-m", '{"action":"cycle"}', env=WITNESS_ENV,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "✓ Message sent to deacon/"
    assert calls(town, "bd") == []  # gt does not shell out to bd
    r = gt(town, "mail", "inbox", "--identity", "deacon/", "--json")
    assert r.stdout.startswith("[\n  {\n")
    msgs = json.loads(r.stdout)
    assert len(msgs) == 1
    m = msgs[0]
    assert list(m)[:9] == [
        "id", "from", "to", "subject", "body", "timestamp", "read", "priority", "type",
    ]  # fmt: skip
    assert m["from"] == "gastown/witness" and m["to"] == "deacon/"
    assert m["subject"] == "LIFECYCLE: gastown/witness requesting cycle"
    assert m["body"] == '{"action":"cycle"}'
    assert m["read"] is False and m["priority"] == "normal" and m["type"] == "notification"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", m["timestamp"])
    # it is a bead of type message in the same store
    bead = bd_json(town, "show", m["id"])[0]
    assert bead["issue_type"] == "message" and bead["assignee"] == "deacon/"
    assert "from:gastown/witness" in bead["labels"]
    assert bd_json(town, "list", "--type", "message")[0]["id"] == m["id"]
    # delete closes it; inbox is empty again
    r = gt(town, "mail", "delete", m["id"])
    assert r.returncode == 0
    assert bd_json(town, "show", m["id"])[0]["status"] == "closed"
    assert gt(town, "mail", "inbox", "--identity", "deacon/", "--json").stdout == "null\n"
    r = gt(town, "mail", "delete", "hq-nope1")
    assert r.returncode == 1 and "Error: message not found: hq-nope1" in r.stderr


def test_inbox_identity_order_priority_and_normalisation(town):
    env_pc = {"GT_ROLE": "polecat", "GT_RIG": "gastown", "GT_POLECAT": "nux"}
    gt(town, "mail", "send", "deacon", "-s", "old", "-m", "b", "--priority", "3", env=env_pc)
    time.sleep(0.01)
    gt(town, "mail", "send", "deacon/", "--subject", "new", "--body", "b", "--urgent")
    gt(town, "mail", "send", "gastown/polecats/nux", "-s", "for nux", "-m", "hi",
       env={"GT_ROLE": "mayor"})  # fmt: skip
    msgs = json.loads(gt(town, "mail", "inbox", "--json", env={"GT_ROLE": "deacon"}).stdout)
    assert [m["subject"] for m in msgs] == ["new", "old"]  # newest first
    assert [m["priority"] for m in msgs] == ["urgent", "low"]
    assert msgs[1]["from"] == "gastown/nux"
    assert msgs[0]["from"] == "overseer"  # no GT_ROLE, cwd = town root
    nux = json.loads(gt(town, "mail", "inbox", "--json", env=env_pc).stdout)
    assert [m["to"] for m in nux] == ["gastown/nux"] and nux[0]["from"] == "mayor/"
    crew = gt(town, "mail", "inbox", "gastown/crew/nux", "--json")
    assert [m["subject"] for m in json.loads(crew.stdout)] == ["for nux"]


def test_seed_mail_backdated_and_archive(town):
    r = gt(
        town, "standin", "seed-mail", "--to", "deacon", "--from", "gastown/polecats/nux",
        "-s", "LIFECYCLE: gastown/nux requesting restart", "-m", "restart",
        "--age-seconds", "25200",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    mid = r.stdout.strip()
    msg = json.loads(gt(town, "mail", "inbox", "--identity", "deacon/", "--json").stdout)[0]
    assert msg["id"] == mid and msg["from"] == "gastown/nux" and msg["to"] == "deacon/"
    from datetime import datetime

    age = datetime.now().astimezone() - datetime.fromisoformat(msg["timestamp"])
    assert 25100 < age.total_seconds() < 25400
    r = gt(town, "mail", "archive", mid)
    assert r.returncode == 0
    arch = [json.loads(x) for x in (town / ".standin" / "mail-archive.jsonl").read_text()
            .splitlines()]  # fmt: skip
    assert arch[0]["id"] == mid and arch[0]["archived_at"]
    assert gt(town, "mail", "inbox", "--identity", "deacon/", "--json").stdout == "null\n"


def test_read_label_marks_read(town):
    mid = gt(town, "standin", "seed-mail", "--to", "mayor/", "--from", "deacon/", "-s", "x",
             "-m", "y").stdout.strip()  # fmt: skip
    bd(town, "label", "add", mid, "read")
    msg = json.loads(gt(town, "mail", "inbox", "--identity", "mayor", "--json").stdout)[0]
    assert msg["read"] is True
    assert gt(town, "mail", "inbox", "mayor/", "--unread", "--json").stdout == "null\n"


# ---------------------------------------------------------------------------
# gt nudge / log / deacon heartbeat / misc
# ---------------------------------------------------------------------------


def test_nudge(town):
    assert gt(town, "nudge", "deacon", "HEALTH_CHECK: heartbeat stale").returncode == 0
    assert gt(town, "nudge", "gastown/polecats/nux", "-m", "Begin.").returncode == 0
    rows = [json.loads(x) for x in (town / ".standin" / "nudges.jsonl").read_text().splitlines()]
    assert [(r["target"], r["message"]) for r in rows] == [
        ("deacon", "HEALTH_CHECK: heartbeat stale"),
        ("gastown/polecats/nux", "Begin."),
    ]


def test_log_crash(town):
    r = gt(town, "log", "crash", "--agent", "gastown/nux", "--session", "gt-gastown-nux",
           "--exit-code", "137")  # fmt: skip
    assert r.returncode == 0, r.stderr
    line = (town / "logs" / "town.log").read_text().splitlines()[-1]
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[crash\] gastown/nux session=gt-gastown-nux "
        r"exit_code=137",
        line,
    )


def test_deacon_heartbeat(town):
    assert gt(town, "deacon", "heartbeat").returncode == 0
    path = town / "deacon" / "heartbeat.json"
    hb = json.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(hb) == ["timestamp", "cycle", "healthy_agents", "unhealthy_agents"]
    assert hb["cycle"] == 1 and hb["timestamp"].endswith("Z")
    gt(town, "deacon", "heartbeat", "health-scan")
    hb = json.loads(path.read_text())
    assert hb["cycle"] == 2 and hb["last_action"] == "health-scan"


def test_gt_unknown_command(town):
    r = gt(town, "frobnicate")
    assert r.returncode == 1 and 'unknown command "frobnicate" for "gt"' in r.stderr
    r = gt(town, "mail", "send", "deacon/", "-m", "no subject")
    assert r.returncode == 1 and 'required flag(s) "subject" not set' in r.stderr


# ---------------------------------------------------------------------------
# agent
# ---------------------------------------------------------------------------


def wait_for(pred, timeout=10.0, interval=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("condition not met in time")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    w = tmp_path / "work"
    w.mkdir()
    return w


def start_agent(workdir, env=None, args=("--dangerously-skip-permissions", "do the thing"),
                **kw):  # fmt: skip
    return subprocess.Popen(
        [sys.executable, str(AGENT), *args],
        cwd=workdir,
        env=clean_env(**(env or {})),
        stdin=kw.pop("stdin", subprocess.PIPE),
        stdout=kw.pop("stdout", subprocess.PIPE),
        stderr=kw.pop("stderr", subprocess.PIPE),
        **kw,
    )


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def read_record(workdir):
    p = workdir / ".agent" / "record.json"
    return json.loads(p.read_text()) if p.exists() else None


def test_agent_record_input_heartbeat_and_exit(town, workdir):
    env = {"GT_ROLE": "deacon", "GT_ROOT": str(town), "BD_ACTOR": "deacon",
           "STANDIN_HEARTBEAT_SECONDS": "0.5"}  # fmt: skip
    p = start_agent(workdir, env=env)
    try:
        rec = wait_for(lambda: read_record(workdir))
        assert rec["pid"] == p.pid
        assert rec["argv"][1:] == ["--dangerously-skip-permissions", "do the thing"]
        assert rec["cwd"] == str(workdir)
        assert rec["env"]["GT_ROLE"] == "deacon" and rec["env"]["GT_ROOT"] == str(town)
        assert rec["started_at"]
        # exec_at: the first process's beginning, carried across the re-exec, not leaked
        begun, started = (datetime.fromisoformat(rec[k]) for k in ("exec_at", "started_at"))
        assert timedelta(0) <= started - begun < timedelta(seconds=10)
        assert "STANDIN_AGENT_EXEC_AT" not in rec["env"]
        assert len((workdir / ".agent" / "starts.log").read_text().splitlines()) == 1
        # nudges arrive as lines on stdin
        p.stdin.write(b"HEALTH_CHECK: respond\x1b\n")
        p.stdin.flush()
        log = workdir / ".agent" / "input.log"
        wait_for(lambda: log.exists() and "HEALTH_CHECK: respond" in log.read_text())
        assert log.read_text().splitlines()[-1] == "HEALTH_CHECK: respond"
        # heartbeat file in contract shape, refreshed
        hbp = town / "deacon" / "heartbeat.json"
        hb = wait_for(lambda: hbp.exists() and json.loads(hbp.read_text()))
        assert set(hb) == {"timestamp", "cycle", "last_action", "healthy_agents",
                           "unhealthy_agents"}  # fmt: skip
        assert stat.S_IMODE(hbp.stat().st_mode) == 0o600
        wait_for(lambda: json.loads(hbp.read_text())["cycle"] >= hb["cycle"] + 1)
        act = workdir / ".agent" / "activity"
        m0 = wait_for(lambda: act.exists() and act.stat().st_mtime_ns)
        wait_for(lambda: act.stat().st_mtime_ns > m0, timeout=5)
        (workdir / ".agent" / "control").write_text("exit\n")
        assert p.wait(timeout=10) == 0
        assert not (workdir / ".agent" / "control").exists()
        assert "reason=exit code=0" in (workdir / ".agent" / "exits.log").read_text()
    finally:
        stop(p)


def test_agent_crash_control(workdir):
    p = start_agent(workdir)
    try:
        wait_for(lambda: read_record(workdir))
        (workdir / ".agent" / "control").write_text("crash")
        assert p.wait(timeout=10) == 1
    finally:
        stop(p)


def test_agent_sigterm_exits_143(workdir):
    p = start_agent(workdir)
    try:
        wait_for(lambda: read_record(workdir))
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 143
    finally:
        stop(p)


def test_agent_starts_log_appends(workdir):
    for _ in range(2):
        p = start_agent(workdir, stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: (rec := read_record(workdir)) and rec["pid"] == p.pid)  # noqa: B023
            (workdir / ".agent" / "control").write_text("exit")
            assert p.wait(timeout=10) == 0  # stdin EOF does not end the agent
        finally:
            stop(p)
    assert len((workdir / ".agent" / "starts.log").read_text().splitlines()) == 2


def test_agent_hang_and_stale(town, workdir):
    env = {"GT_ROLE": "deacon", "GT_ROOT": str(town), "STANDIN_HEARTBEAT_SECONDS": "0.3"}
    hbp = town / "deacon" / "heartbeat.json"
    act = workdir / ".agent" / "activity"
    p = start_agent(workdir, env=env)
    try:
        wait_for(lambda: hbp.exists() and act.exists())
        (workdir / ".agent" / "control").write_text("stale")
        wait_for(lambda: not (workdir / ".agent" / "control").exists())
        time.sleep(0.4)
        cyc = json.loads(hbp.read_text())["cycle"]
        m0 = act.stat().st_mtime_ns
        time.sleep(1.5)
        assert json.loads(hbp.read_text())["cycle"] == cyc  # no more heartbeats
        assert act.stat().st_mtime_ns > m0  # still active
        (workdir / ".agent" / "control").write_text("hang")
        wait_for(lambda: not (workdir / ".agent" / "control").exists())
        time.sleep(1.2)
        m1 = act.stat().st_mtime_ns
        p.stdin.write(b"ignored while hung\n")
        p.stdin.flush()
        time.sleep(1.5)
        assert act.stat().st_mtime_ns == m1
        inlog = workdir / ".agent" / "input.log"
        assert not inlog.exists() or "ignored" not in inlog.read_text()
        assert p.poll() is None
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 143
    finally:
        stop(p)


def test_agent_no_heartbeat_when_disabled_or_not_deacon(town, workdir):
    p = start_agent(workdir, env={"GT_ROLE": "deacon", "GT_ROOT": str(town),
                                  "STANDIN_HEARTBEAT_SECONDS": "0"})  # fmt: skip
    q = start_agent(workdir, env={"GT_ROLE": "witness", "GT_ROOT": str(town),
                                  "STANDIN_HEARTBEAT_SECONDS": "0.2"})  # fmt: skip
    try:
        wait_for(lambda: (workdir / ".agent" / "activity").exists())
        time.sleep(1.0)
        assert not (town / "deacon" / "heartbeat.json").exists()
    finally:
        stop(p)
        stop(q)


class PtyAgent:
    def __init__(self, workdir, env=None):
        self.master, slave = pty.openpty()
        self.proc = start_agent(workdir, env=env, stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        self.buf = b""

    def read_until(self, needle: bytes, timeout=10.0) -> bytes:
        end = time.monotonic() + timeout
        while needle not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not seen; got {self.buf[-400:]!r}")
            r, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if r:
                try:
                    self.buf += os.read(self.master, 4096)
                except OSError:
                    break
        return self.buf

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self):
        stop(self.proc)
        os.close(self.master)


def test_agent_bypass_dialog_accept_via_pty(workdir):
    (workdir / ".agent").mkdir()
    (workdir / ".agent" / "bypass-dialog").touch()
    a = PtyAgent(workdir)
    try:
        a.read_until(b"Bypass Permissions mode")
        assert b"\xe2\x9d\xaf " not in a.buf.split(b"Bypass Permissions mode")[1]
        a.write(b"\x1b[B")
        time.sleep(0.2)
        a.write(b"\r")  # tmux Enter = CR; the tty turns it into a newline
        a.read_until("\n❯ ".encode())
        wait_for(lambda: (workdir / ".agent" / "bypass-accepted").exists())
        assert (workdir / ".agent" / "bypass-accepted").read_text().strip() == "accepted"
        a.write(b"Begin.\r")
        a.read_until(b"Received: Begin.")
        assert "Begin." in (workdir / ".agent" / "input.log").read_text()
    finally:
        a.close()


def test_agent_bypass_dialog_enter_only_declines(workdir):
    (workdir / ".agent").mkdir()
    (workdir / ".agent" / "bypass-dialog").touch()
    a = PtyAgent(workdir)
    try:
        a.read_until(b"Bypass Permissions mode")
        a.write(b"\r")
        assert a.proc.wait(timeout=10) == 1
        assert not (workdir / ".agent" / "bypass-accepted").exists()
    finally:
        a.close()


def test_agent_ready_prompt_without_dialog_via_pty(workdir):
    a = PtyAgent(workdir)
    try:
        out = a.read_until("\n❯ ".encode())
        assert b"do the thing" in out
    finally:
        a.close()


@pytest.mark.tmux
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
def test_agent_in_tmux_looks_like_claude(tmp_path, workdir):
    sock = str(tmp_path / "tmux.sock")
    tm = ["tmux", "-S", sock]
    cmd = f'exec env GT_ROLE=witness GT_RIG=gastown {sys.executable} {AGENT} "patrol"'
    subprocess.run([*tm, "new-session", "-d", "-s", "gt-gastown-witness", "-c", str(workdir),
                    cmd], check=True, env=clean_env(), timeout=20)  # fmt: skip
    try:

        def pane_cmd():
            r = subprocess.run(
                [*tm, "list-panes", "-t", "=gt-gastown-witness", "-F",
                 "#{pane_current_command}"], capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            return r.stdout.strip() == "claude"

        wait_for(pane_cmd)

        def captured():
            return subprocess.run(
                [*tm, "capture-pane", "-p", "-t", "gt-gastown-witness"],
                capture_output=True, text=True, timeout=10,
            ).stdout  # fmt: skip

        wait_for(lambda: any(ln.startswith("❯") for ln in captured().splitlines()))
        subprocess.run([*tm, "send-keys", "-t", "gt-gastown-witness", "-l", "hello nudge"],
                       check=True, timeout=10)  # fmt: skip
        subprocess.run([*tm, "send-keys", "-t", "gt-gastown-witness", "Enter"], check=True,
                       timeout=10)  # fmt: skip
        log = workdir / ".agent" / "input.log"
        wait_for(lambda: log.exists() and "hello nudge" in log.read_text())
    finally:
        subprocess.run([*tm, "kill-server"], capture_output=True, timeout=10)


# ---------------------------------------------------------------------------
# A real town's databases: routing, discovery, limits, eras (issue 8 item 9)
# ---------------------------------------------------------------------------


@pytest.fixture
def routed_town(tmp_path: Path) -> Path:
    """A town built as tests/harness/town.py builds it: hq- in the town, gt- routed to
    gastown/mayor/rig (beads.md §7.6, gastown.md §1.4)."""
    from tests.harness.town import make_town

    return make_town(tmp_path / "rt", rigs={"gastown": "gt"})


def test_show_update_close_route_by_prefix_list_does_not(routed_town):
    """beads.md §7.6: show/update/close/agent route across rigs by the text up to the first
    hyphen; list and ready work on the database the cwd (or BEADS_DIR) finds (§7.1)."""
    rig = routed_town / "gastown"
    work = create(routed_town, "rig work", cwd=rig)  # through <rig>/.beads/redirect
    assert work["id"].startswith("gt-")
    town_item = create(routed_town, "town work")
    assert town_item["id"].startswith("hq-")
    store = rig / "mayor" / "rig" / ".beads" / "issues.jsonl"
    assert work["id"] in store.read_text()
    shown = bd_json(routed_town, "show", work["id"], town_item["id"])
    assert [i["id"] for i in shown] == [work["id"], town_item["id"]]
    assert bd_json(routed_town, "update", work["id"], "--status=in_progress")[0]["id"]
    assert '"in_progress"' in store.read_text()
    bd_json(routed_town, "close", work["id"])
    assert [i["id"] for i in bd_json(routed_town, "list")] == [town_item["id"]]
    assert [i["id"] for i in bd_json(routed_town, "list", "--all", cwd=rig)] == [work["id"]]
    assert [i["id"] for i in bd_json(routed_town, "ready")] == [town_item["id"]]
    env = {"BEADS_DIR": str(rig / ".beads")}
    assert [i["id"] for i in bd_json(routed_town, "list", "--all", env=env)] == [work["id"]]


def test_agent_and_slot_route_to_the_agent_beads_database(routed_town):
    rig = routed_town / "gastown"
    issue = create(routed_town, "w", cwd=rig)["id"]
    bd_json(routed_town, "create", "--id=gt-gastown-polecat-nux", "--title=nux", "--type=agent",
            "--labels=gt:agent", "--force", cwd=rig)
    r = bd(routed_town, "slot", "set", "gt-gastown-polecat-nux", "hook", issue)
    assert r.returncode == 0, r.stderr
    r = bd(routed_town, "agent", "state", "gt-gastown-polecat-nux", "working")
    assert r.returncode == 0, r.stderr
    agent = bd_json(routed_town, "show", "gt-gastown-polecat-nux")[0]
    assert (agent["hook_bead"], agent["agent_state"]) == (issue, "working")


def test_create_with_rig_routes_and_a_missing_route_target_is_no_route(routed_town):
    made = create(routed_town, "via --rig", "--rig", "gastown")
    assert made["id"].startswith("gt-")
    assert made["id"] in (routed_town / "gastown/mayor/rig/.beads/issues.jsonl").read_text()
    with (routed_town / ".beads" / "routes.jsonl").open("a") as f:
        f.write('{"prefix": "zz-", "path": "nowhere/mayor/rig"}\n# comment\nnot json\n')
    r = bd(routed_town, "show", "zz-abc", "--json")  # target must exist: the town is asked
    assert r.returncode == 0 and r.stdout == "" and "no issue found matching" in r.stderr


def test_discovery_stops_at_the_git_root(routed_town):
    """beads.md §7.1: ``.beads`` in the cwd and its parents, stopping at the git root."""
    repo = routed_town / "gastown" / "crew" / "max"
    (repo / ".git").mkdir(parents=True)
    r = bd(routed_town, "list", "--json", cwd=repo)
    assert r.returncode == 1 and "no beads database found" in r.stderr


def test_ready_default_limit_10_at_o_and_100_at_n(town):
    """beads.md §5.1: ``-n/--limit`` default 10 in O, 100 in N; 0 = unlimited."""
    seed(town, *({"id": f"hq-r{n:04d}", "title": str(n)} for n in range(12)))
    assert len(bd_json(town, "ready")) == 10
    assert len(bd_json(town, "ready", "--limit", "0")) == 12
    knob(town, "bd.mode", "N")
    assert len(bd_json(town, "ready")) == 12


def test_n_hides_agents_from_a_label_list_but_not_from_type_agent(town):
    """beads.md §9.7: at N agent rows live in wisps; ``bd list --label gt:agent`` without
    ``--type agent`` or ``--include-infra`` returns no agents."""
    seed(town, {"id": "hq-deacon", "title": "deacon", "issue_type": "agent",
                "labels": ["gt:agent"]})
    assert len(bd_json(town, "list", "--label=gt:agent")) == 1
    knob(town, "bd.mode", "N")
    assert bd_json(town, "list", "--label=gt:agent") == []
    assert len(bd_json(town, "list", "--type=agent")) == 1
    assert len(bd_json(town, "list", "--label=gt:agent", "--include-infra")) == 1
    for removed in ("agent", "slot"):  # §9.1: gone at N, a cobra unknown-command error
        r = bd(town, removed, "show", "hq-deacon")
        assert r.returncode == 1 and f'unknown command "{removed}"' in r.stderr


def test_gt_sling_hooks_rig_work_in_the_rig_database_and_is_slow(routed_town):
    """gastown.md §1.4/§3.5: sling hooks the bead to a new polecat (agent bead in the rig's
    database, worktree from .repo.git when there is one) and returns only after the start
    (stand-in: ``gt.sling-seconds``, default 2 s)."""
    rig = routed_town / "gastown"
    issue = create(routed_town, "w", cwd=rig)["id"]
    started = time.monotonic()
    r = gt(routed_town, "sling", issue, "gastown")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - started >= 2.0
    shown = bd_json(routed_town, "show", issue)[0]
    assert (shown["status"], shown["assignee"]) == ("hooked", "gastown/polecats/nux")
    agent = bd_json(routed_town, "show", "gt-gastown-polecat-nux")[0]
    assert agent["hook_bead"] == issue and "gt:agent" in agent["labels"]
    r = gt(routed_town, "sling", issue, "gastown")
    assert r.returncode == 1 and "already hooked" in r.stderr
