"""The [L] (mid-2026) mode of the stand-ins and the [L] test town.

Each test names the section of /work/shared/contracts/gastown-2026.md (or beads.md) it
checks. The stand-ins follow the contracts, never our product code.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness.town import L_PATROLS, hook_work, make_l_town, make_town
from tests.unit.test_standins import GT, bd, bd_json, clean_env, gt, knob, seed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "standins"))
from _common import l_socket_name  # noqa: E402

RIG = "gastown"
POLECAT_ENV = {
    "GT_RIG": RIG, "GT_POLECAT": "nux", "GT_ROLE": f"{RIG}/polecats/nux",
    "BD_ACTOR": f"{RIG}/polecats/nux", "GT_SESSION": "gt-nux",
}  # fmt: skip


@pytest.fixture
def ltown(tmp_path: Path) -> Path:
    town = make_l_town(tmp_path / "ltown", rigs={RIG: "gt"})
    knob(town, "gt.sling-seconds", "0")
    return town


@pytest.fixture
def jtown(tmp_path: Path) -> Path:
    town = make_town(tmp_path / "jtown", rigs={RIG: "gt"})
    knob(town, "gt.sling-seconds", "0")
    return town


def store(db: Path) -> dict[str, dict]:
    rows = [json.loads(x) for x in (db / "issues.jsonl").read_text().splitlines() if x.strip()]
    return {r["id"]: r for r in rows}


def rig_db(town: Path) -> Path:
    return town / RIG / "mayor" / "rig" / ".beads"


def fake_tmux(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A ``tmux`` that only records its argv (GT_STANDIN_TMUX), for tests without tmux."""
    log = tmp_path / "tmux-calls.jsonl"
    script = tmp_path / "fake-tmux"
    script.write_text("#!/bin/sh\nprintf '%s\\n' \"$*\" >> " + str(log) + "\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {"GT_STANDIN_TMUX": str(script)}, log


def slung(town: Path) -> str:
    work = json.loads(bd(town, "create", "--title=w", "--json", cwd=town / RIG).stdout)["id"]
    r = gt(town, "sling", work, RIG)
    assert r.returncode == 0, r.stderr
    return work


# ---------------------------------------------------------------------------
# gt version (§0.1)
# ---------------------------------------------------------------------------


def test_l_gt_version_forms_gastown_2026_0_1(jtown, ltown, tmp_path):
    assert gt(jtown, "version").stdout == "gt version 0.5.0 (dev: main@cdcde82cd1a2)\n"
    assert gt(jtown, "--version").stdout == "gt version 0.5.0\n"
    for flag in ("--short", "-v"):  # [L] only; on [J] an unknown flag fails
        r = gt(jtown, "version", flag)
        assert r.returncode == 1 and "unknown" in r.stderr and r.stdout == ""
    assert gt(jtown, "-v").returncode == 1
    assert gt(ltown, "version").stdout == (
        "gt version 1.2.1-304-g649b832b (dev: main@649b832b1234)\n")
    assert gt(ltown, "--version").stdout == "gt version 1.2.1-304-g649b832b\n"
    assert gt(ltown, "-v").stdout == "gt version 1.2.1-304-g649b832b\n"
    assert gt(ltown, "version", "--short").stdout == "1.2.1-304-g649b832b-dev\n"
    knob(ltown, "gt.version", "0.9.0\n")  # e.g. tag v0.10.0 still says 0.9.0
    assert gt(ltown, "version").stdout == "gt version 0.9.0 (dev: main@649b832b1234)\n"
    assert gt(ltown, "version", "--short").stdout == "0.9.0-dev\n"
    outside = tmp_path / "nowhere"
    outside.mkdir()
    assert gt(outside, "version").stdout.startswith("gt version 0.5.0 ")
    r = gt(outside, "version", "--short", env={"GT_STANDIN_DIALECT": "L"})
    assert (r.returncode, r.stdout) == (0, "1.2.1-304-g649b832b-dev\n")


# ---------------------------------------------------------------------------
# bd 1.0.5 in an [L] town (header [B], §4.2, §4.3, §4.6; beads.md §9)
# ---------------------------------------------------------------------------


def test_l_town_runs_bd_1_0_5_gastown_2026_header_b_and_0_2(jtown, ltown):
    assert gt(ltown, "version").returncode == 0
    assert bd(ltown, "version").stdout.startswith("bd version 1.0.5 ")
    assert bd(jtown, "version").stdout.startswith("bd version 0.49.0 ")
    for removed in ("agent", "slot"):  # beads.md §9.1: gone at N
        r = bd(ltown, removed, "show", "hq-mayor")
        assert r.returncode == 1 and f'unknown command "{removed}"' in r.stderr


def test_l_show_not_found_form_gastown_2026_4_6(ltown):
    r = bd(ltown, "show", "hq-nope1", "--json")
    assert r.returncode == 1
    assert r.stdout == ('{\n  "error": "no issues found matching the provided IDs",\n'
                        '  "schema_version": 1\n}\n')
    assert r.stderr == 'Error fetching hq-nope1: no issue found matching "hq-nope1"\n'
    env = bd(ltown, "show", "hq-nope1", "--json", env={"BD_JSON_ENVELOPE": "1"})
    assert env.returncode == 1
    assert json.loads(env.stdout) == {
        "data": {"error": "no issues found matching the provided IDs"}, "schema_version": 1}
    plain = bd(ltown, "show", "hq-nope1")  # without --json: the same stderr line, exit 1
    assert (plain.returncode, plain.stdout) == (1, "")
    assert plain.stderr == r.stderr
    a = bd_json(ltown, "create", "--title=A")
    part = bd(ltown, "show", a["id"], "hq-nope1", "hq-nope2", "--json")
    assert part.returncode == 0
    assert [d["id"] for d in json.loads(part.stdout)] == [a["id"]]  # array: no schema_version
    assert part.stderr.splitlines() == [
        'Error fetching hq-nope1: no issue found matching "hq-nope1"',
        'Error fetching hq-nope2: no issue found matching "hq-nope2"']


def test_l_json_objects_carry_schema_version_beads_9_4(ltown):
    made = bd_json(ltown, "create", "--title=A")
    assert made["schema_version"] == 1
    wrapped = json.loads(bd(ltown, "show", made["id"], "--json",
                            env={"BD_JSON_ENVELOPE": "1"}).stdout)
    assert wrapped["schema_version"] == 1 and wrapped["data"][0]["id"] == made["id"]


def test_l_no_hook_bead_key_in_json_gastown_2026_4_2(ltown):
    seed(ltown, {"id": "hq-x-polecat-nux", "title": "nux", "labels": ["gt:agent"],
                 "hook_bead": "gt-abc", "agent_state": "working", "role_type": "polecat",
                 "rig": "x", "description": "agent_state: working\nhook_bead: gt-abc"})
    for args in (("show", "hq-x-polecat-nux"),
                 ("list", "--include-infra", "--id=hq-x-polecat-nux")):
        row = bd_json(ltown, *args)[0]
        for gone in ("hook_bead", "agent_state", "role_type", "rig", "role_bead"):
            assert gone not in row
        assert "hook_bead: gt-abc" in row["description"]  # description lines stay


def test_l_list_scoping_flat_infra_type_agent_and_wisps_gastown_2026_4_3(ltown):
    seed(ltown,
         {"id": "hq-t-polecat-nux", "title": "L agent", "issue_type": "task",
          "labels": ["gt:agent"]},
         {"id": "hq-deacon", "title": "J agent", "issue_type": "agent",
          "labels": ["gt:agent"]},
         {"id": "hq-w1", "title": "a wisp", "ephemeral": True},
         {"id": "hq-m1", "title": "mail", "issue_type": "message"})

    def ids(*args):  # the seeded rows (the town's own agent beads left out)
        return sorted(d["id"] for d in bd_json(ltown, "list", *args) if d["id"][:3] == "hq-")

    assert ids("--flat") == ids()  # --flat is harmless
    assert "hq-deacon" not in ids() and "hq-m1" not in ids()  # infra hidden by default
    assert "hq-deacon" in ids("--include-infra") and "hq-m1" in ids("--include-infra")
    assert ids("--label=gt:agent", "--flat") == ["hq-t-polecat-nux"]
    assert ids("--label=gt:agent", "--include-infra") == ["hq-deacon", "hq-t-polecat-nux"]
    assert ids("--type=agent") == ["hq-deacon"]  # wisps only: misses the task agent bead
    wisps = sorted(d["id"] for d in bd_json(ltown, "mol", "wisp", "list") if d["id"][:3] == "hq-")
    assert wisps == ["hq-deacon", "hq-m1", "hq-w1"]
    assert ids("--assignee=x/polecats/y", "--status=hooked,in_progress", "--flat") == []


def test_l_show_looks_in_the_pinned_store_before_routing_gastown_2026_4_6(ltown):
    """§4.1/§4.6: [L] agent beads live in the town DB although their prefix routes to the
    rig; a pinned (local-first) show finds them, one from the rig's database does not."""
    pinned = {"BEADS_DIR": str(ltown / ".beads")}
    assert bd_json(ltown, "show", "gt-gastown-witness", env=pinned)[0]["id"] == (
        "gt-gastown-witness")
    r = bd(ltown, "show", "gt-gastown-witness", "--json", cwd=ltown / RIG)
    assert r.returncode == 1 and "no issues found" in r.stdout


# ---------------------------------------------------------------------------
# The [L] town (harness) and what every [L] gt command writes (§0.2, §1.2, §1.5b, §2)
# ---------------------------------------------------------------------------


def test_l_town_layout_gastown_2026_0_2_and_2(ltown, jtown):
    assert (ltown / ".standin" / "gt.dialect").read_text().strip() == "L"
    assert (ltown / "rigs.json").read_bytes() == (ltown / "mayor" / "rigs.json").read_bytes()
    for marker in (".events.jsonl.lock", "deacon/.deacon-heartbeat", "CLAUDE.md", "AGENTS.md"):
        assert (ltown / marker).is_file(), marker
    for d in (".runtime/heartbeats", ".runtime/pids", ".runtime/nudge_queue",
              ".runtime/nudge_poller", "events"):
        assert (ltown / d).is_dir(), d
    patrols = json.loads((ltown / "mayor" / "daemon.json").read_text())["patrols"]
    for key in ("wisp_reaper", "handler", "main_branch_test", "scheduled_maintenance"):
        assert patrols[key]["enabled"] is True
    assert patrols == L_PATROLS
    town_db = store(ltown / ".beads")
    for aid in ("gt-gastown-witness", "gt-gastown-refinery"):  # §4.1: town DB, task+gt:agent
        assert town_db[aid]["issue_type"] == "task" and town_db[aid]["labels"] == ["gt:agent"]
    assert store(rig_db(ltown))["gt-rig-gastown"]["issue_type"] == "rig"  # §2 identity bead
    pinned = {"BEADS_DIR": str(ltown / RIG / ".beads")}
    assert bd_json(ltown, "show", "gt-rig-gastown", env=pinned)[0]["id"] == "gt-rig-gastown"
    # [J] towns stay as they were: none of the [L] markers.
    for marker in ("rigs.json", ".events.jsonl.lock", ".runtime", "events", "mayor/daemon.json",
                   "deacon/.deacon-heartbeat", ".standin/gt.dialect"):
        assert not (jtown / marker).exists(), marker
    assert store(jtown / ".beads") == {} and store(rig_db(jtown)) == {}


def test_l_collapsed_ids_when_prefix_is_the_rig_name_gastown_2026_4_1(tmp_path):
    town = make_l_town(tmp_path / "ff-town", rigs={"ff": "ff"})
    assert {"ff-witness", "ff-refinery"} <= set(store(town / ".beads"))
    knob(town, "gt.sling-seconds", "0")
    work = json.loads(bd(town, "create", "--title=w", "--json", cwd=town / "ff").stdout)["id"]
    assert gt(town, "sling", work, "ff").returncode == 0
    assert "ff-polecat-nux" in store(town / ".beads")


def test_l_every_gt_command_copies_rigs_json_only_if_older_gastown_2026_1_2(ltown, jtown):
    (ltown / "rigs.json").unlink()
    assert gt(ltown, "mail", "inbox", "--json").returncode == 0
    copy = ltown / "rigs.json"
    assert copy.read_bytes() == (ltown / "mayor" / "rigs.json").read_bytes()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o644
    copy.write_text("{}\n")  # newer than mayor/rigs.json: left alone
    gt(ltown, "version")
    assert copy.read_text() == "{}\n"
    old = (ltown / "mayor" / "rigs.json").stat().st_mtime - 60
    os.utime(copy, (old, old))  # older: copied again
    gt(ltown, "nudge", "mayor/", "hi")
    assert copy.read_bytes() == (ltown / "mayor" / "rigs.json").read_bytes()
    gt(jtown, "mail", "inbox", "--json")
    assert not (jtown / "rigs.json").exists()  # [J] never writes it


def test_l_working_heartbeat_for_polecat_crew_dog_sessions_gastown_2026_1_5b(ltown, jtown):
    hb_dir = ltown / ".runtime" / "heartbeats"
    gt(ltown, "mail", "inbox", env=POLECAT_ENV)
    hb = json.loads((hb_dir / "gt-nux.json").read_text())
    assert hb["state"] == "working" and hb["timestamp"].endswith("Z")
    assert (hb_dir / "gt-nux.json").read_text().startswith('{"timestamp":')  # compact
    gt(ltown, "version", env={"GT_SESSION": "gt-crew-max", "GT_ROLE": f"{RIG}/crew/max"})
    assert (hb_dir / "gt-crew-max.json").is_file()
    gt(ltown, "version", env={"GT_SESSION": "gt-witness", "GT_ROLE": f"{RIG}/witness"})
    gt(ltown, "version", env={"GT_ROLE": f"{RIG}/polecats/ace"})  # no GT_SESSION: none
    assert sorted(p.name for p in hb_dir.iterdir()) == ["gt-crew-max.json", "gt-nux.json"]
    gt(jtown, "mail", "inbox", env=POLECAT_ENV)
    assert not (jtown / ".runtime").exists()


# ---------------------------------------------------------------------------
# gt sling (§4.1, §4.4) and gt done (§5.6, §3.3, §1.5b)
# ---------------------------------------------------------------------------


def test_l_sling_creates_the_agent_bead_in_the_town_db_gastown_2026_4_1_4_4(ltown):
    work = slung(ltown)
    issue = store(rig_db(ltown))[work]
    assert (issue["status"], issue["assignee"]) == ("hooked", f"{RIG}/polecats/nux")
    assert "gt-gastown-polecat-nux" not in store(rig_db(ltown))
    agent = store(ltown / ".beads")["gt-gastown-polecat-nux"]
    assert (agent["issue_type"], agent["labels"]) == ("task", ["gt:agent"])
    assert "hook_bead" not in agent and "agent_state" not in agent
    assert "agent_state: spawning" in agent["description"].splitlines()
    assert f"hook_bead: {work}" in agent["description"].splitlines()
    lines = (ltown / ".events.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["type"] == "sling"


def test_l_done_refuses_unless_bd_actor_agrees_gastown_2026_3_3(ltown, tmp_path):
    work = slung(ltown)
    tmux_env, tmux_log = fake_tmux(tmp_path)
    for bad in ({"BD_ACTOR": f"{RIG}/polecats/ace"}, {"BD_ACTOR": ""},
                {"GT_ROLE": f"{RIG}/witness"}, {"GT_TOWN_ROOT": str(tmp_path)}):
        r = gt(ltown, "done", env={**POLECAT_ENV, **tmux_env, **bad})
        assert r.returncode == 1 and r.stderr.startswith("Error: gt done"), bad
    assert store(rig_db(ltown))[work]["status"] == "hooked"
    assert not tmux_log.exists()
    bare = {**POLECAT_ENV, **tmux_env, "GT_ROLE": "polecat"}  # bare role also agrees
    assert gt(ltown, "done", env=bare).returncode == 0


def test_l_done_completed_closes_nudges_and_kills_its_session_gastown_2026_5_6(ltown,
                                                                               tmp_path):
    work = slung(ltown)
    tmux_env, tmux_log = fake_tmux(tmp_path)
    r = gt(ltown, "done", env={**POLECAT_ENV, **tmux_env})
    assert r.returncode == 0, r.stderr
    hb = json.loads((ltown / ".runtime" / "heartbeats" / "gt-nux.json").read_text())
    assert (hb["state"], hb["bead"]) == ("exiting", work)  # §1.5b
    assert store(rig_db(ltown))[work]["status"] == "closed"
    desc = store(ltown / ".beads")["gt-gastown-polecat-nux"]["description"].splitlines()
    assert "agent_state: done" in desc and "hook_bead: null" in desc
    assert "exit_type: COMPLETED" in desc
    nudge = json.loads((ltown / ".standin" / "nudges.jsonl").read_text().splitlines()[-1])
    assert (nudge["target"], nudge["message"]) == (f"{RIG}/witness", "POLECAT_DONE nux "
                                                   "exit=COMPLETED")
    (event_file,) = (ltown / "events" / "witness").glob("*.event")
    nano, seq, pid = event_file.stem.split("-")
    assert nano.isdigit() and seq.isdigit() and pid.isdigit()
    assert event_file.read_text().startswith("{\n  ")  # indented
    assert set(json.loads(event_file.read_text())) == {"type", "channel", "timestamp",
                                                       "payload"}
    feed = [json.loads(x) for x in (ltown / ".events.jsonl").read_text().splitlines()]
    assert feed[-1]["type"] == "done" and feed[-1]["actor"] == f"{RIG}/nux"
    sock = l_socket_name(str(ltown))
    assert tmux_log.read_text().splitlines() == [f"-u -L {sock} kill-session -t =gt-nux"]


def test_l_done_escalated_keeps_the_session_and_the_work_gastown_2026_5_6(ltown, tmp_path):
    work = slung(ltown)
    tmux_env, tmux_log = fake_tmux(tmp_path)
    r = gt(ltown, "done", "--status", "ESCALATED", env={**POLECAT_ENV, **tmux_env})
    assert r.returncode == 0, r.stderr
    assert store(rig_db(ltown))[work]["status"] == "hooked"
    desc = store(ltown / ".beads")["gt-gastown-polecat-nux"]["description"].splitlines()
    assert "agent_state: stuck" in desc and f"hook_bead: {work}" in desc
    nudge = json.loads((ltown / ".standin" / "nudges.jsonl").read_text().splitlines()[-1])
    assert nudge["message"] == "POLECAT_DONE nux exit=ESCALATED"
    assert not tmux_log.exists()
    assert gt(ltown, "done", "--status", "BOGUS", env=POLECAT_ENV).returncode == 1


def test_j_done_mails_polecat_done_and_keeps_the_session_gastown_5_6(jtown, tmp_path):
    work = slung(jtown)
    tmux_env, tmux_log = fake_tmux(tmp_path)
    env = {"GT_RIG": RIG, "GT_POLECAT": "nux", "GT_ROLE": "polecat", **tmux_env}
    r = gt(jtown, "done", env=env)  # [J]: no BD_ACTOR check
    assert r.returncode == 0, r.stderr
    inbox = json.loads(gt(jtown, "mail", "inbox", f"{RIG}/witness", "--json").stdout)
    assert [m["subject"] for m in inbox] == ["POLECAT_DONE nux"]
    assert inbox[0]["from"] == f"{RIG}/nux"
    assert inbox[0]["body"].splitlines()[:2] == ["Exit: COMPLETED", f"Issue: {work}"]
    assert not tmux_log.exists() and not (jtown / ".runtime").exists()
    assert not (jtown / ".events.jsonl").exists()
    assert store(rig_db(jtown))[work]["status"] == "hooked"


def test_done_outside_a_polecat_is_refused(ltown):
    r = gt(ltown, "done")
    assert r.returncode == 1 and "polecat" in r.stderr


def test_l_events_wait_for_the_events_lock_gastown_2026_1_2(ltown, tmp_path):
    """§1.2: every event write takes the flock on ``.events.jsonl.lock``."""
    work = slung(ltown)
    feed = ltown / ".events.jsonl"
    before = feed.read_text()
    fd = os.open(ltown / ".events.jsonl.lock", os.O_RDWR)
    proc = None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        proc = subprocess.Popen(
            [sys.executable, str(GT), "done", "--status", "ESCALATED"], cwd=ltown,
            env=clean_env(**POLECAT_ENV), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)
        assert proc.poll() is None and feed.read_text() == before  # blocked on the lock
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        if proc is not None:
            proc.wait(timeout=20)
    assert proc.returncode == 0
    assert json.loads(feed.read_text().splitlines()[-1])["payload"]["bead"] == work


def test_l_hook_work_hooks_as_l_does_gastown_2026_4_4(ltown):
    work = hook_work(ltown, RIG, "ace")
    issue = store(rig_db(ltown))[work]
    assert (issue["status"], issue["assignee"]) == ("hooked", f"{RIG}/polecats/ace")
    agent = store(ltown / ".beads")["gt-gastown-polecat-ace"]
    assert (agent["issue_type"], agent["labels"]) == ("task", ["gt:agent"])
    assert f"hook_bead: {work}" in agent["description"]


def test_l_dialect_from_the_env_outside_a_town_gives_bd_1_0_5_beads_9(tmp_path):
    db = tmp_path / "lone" / ".beads"
    db.mkdir(parents=True)
    (db / "config.yaml").write_text('issue-prefix: "lo"\n')
    env = {"BEADS_DIR": str(db), "GT_STANDIN_DIALECT": "L"}
    r = bd(tmp_path, "show", "lo-nope", "--json", env=env)
    assert r.returncode == 1 and json.loads(r.stdout)["schema_version"] == 1
    r = bd(tmp_path, "show", "lo-nope", "--json", env={"BEADS_DIR": str(db)})
    assert (r.returncode, r.stdout) == (0, "")  # [J]/O default unchanged
