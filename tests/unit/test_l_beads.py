"""[L] rows 11-17 of gastown-2026.md §8: the pure parts (bd answers, work from assignees,
the report-only crash plan, dialect defaults, restart_state.json, session heartbeats)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from gastown_units.config import DIALECT_DEFAULTS, Settings, default_of, load_with_sources
from gastown_units.errors import ConfigError, ToolError
from gastown_units.ports import runner
from gastown_units.ports.beads import Beads, agent_from_json, assigned_work, is_agent
from gastown_units.services.polecat_plan import (
    Act,
    Limits,
    PolecatFacts,
    SweepState,
    plan_sweep,
)
from gastown_units.services.restart_tracker import Policy, RestartTracker
from gastown_units.services.sessions import Liveness
from gastown_units.town.jsonfile import DamagedFile
from gastown_units.town.layout import Town
from gastown_units.town.restart_state import (
    CLEAR_COMMAND,
    DeaconRestarts,
    TrackerPolicy,
    read_deacon,
    tracker_policy,
    write_deacon,
)
from gastown_units.town.session_heartbeat import read_session_heartbeat

ZERO = "0001-01-01T00:00:00Z"


# --- row 16: every "not found" form, and never an unreadable answer ----------------------
def judge(rc: int, out: str, err: str = "") -> object:
    return Beads._judge("show", runner.Result(("bd", "show"), rc, out, err))


@pytest.mark.parametrize(("rc", "out", "err"), [
    (0, "", ""),  # [J] bd: exit 0, empty stdout
    (0, "[]", ""),
    (0, "null", ""),
    (1, '{\n  "error": "no issues found matching the provided IDs",\n  "schema_version": 1\n}',
     'Error fetching st-x: no issue found matching "st-x"'),
    (1, '{"data": {"error": "no issues found matching the provided IDs"}, "schema_version": 1}',
     ""),  # BD_JSON_ENVELOPE=1
    (1, "", "Issue st-x not found"),
    (1, "", 'Error fetching st-x: no issue found matching "st-x"'),
    (0, '{"error": "resolving ID st-x: no issue found matching \\"st-x\\""}', ""),
])
def test_not_found_forms(rc: int, out: str, err: str) -> None:
    assert judge(rc, out, err) is None


@pytest.mark.parametrize(("rc", "out", "err"), [
    (1, "", "database is locked"),  # a failure, not an answer
    (1, '{"error": "dolt server unreachable", "schema_version": 1}', ""),
    (1, "Error: not found\n", "not found"),  # unreadable stdout: unknown even with "not found"
    (0, "{broken", ""),
    (0, '"a string"', ""),
    (1, '{"data": {"error": "connection refused"}, "schema_version": 1}', ""),
])
def test_unreadable_or_failed_answers_are_unknown_never_not_found(rc: int, out: str,
                                                                  err: str) -> None:
    with pytest.raises(ToolError):
        judge(rc, out, err)


def test_partial_answer_keeps_the_found_ones() -> None:
    got = judge(0, '[{"id": "st-a"}]', 'Error fetching st-b: no issue found matching "st-b"')
    assert got == [{"id": "st-a"}]


# --- rows 14, 15: agent beads and their work -------------------------------------------
def test_agent_is_type_agent_or_label() -> None:
    assert is_agent({"issue_type": "agent"})
    assert is_agent({"issue_type": "task", "labels": ["gt:agent"]})
    assert not is_agent({"issue_type": "task", "labels": ["gt:agentx"]})


def test_hook_column_is_told_from_a_description_line() -> None:
    bd1 = agent_from_json({"id": "st-polecat-a", "description": "x\n\nhook_bead: st-1"})
    assert (bd1.hook_bead, bd1.hook_column) == ("st-1", None)  # bd >= 0.62: no key
    old = agent_from_json({"id": "a", "hook_bead": "st-2", "description": "x\n\nhook_bead: st-1"})
    assert (old.hook_bead, old.hook_column) == ("st-2", "st-2")
    empty = agent_from_json({"id": "a", "hook_bead": None})
    assert empty.hook_column == ""


def test_assigned_work_one_entry_per_assignee() -> None:
    work = assigned_work([
        {"id": "st-5", "status": "in_progress", "assignee": "st/polecats/a"},
        {"id": "st-7", "status": "hooked", "assignee": "st/polecats/a"},
        {"id": "st-1", "status": "open", "assignee": "st/polecats/b"},
        {"id": "st-2", "status": "in_progress", "assignee": "st/polecats/c"},
        {"id": "st-3", "status": "hooked"},
        {"id": 4, "status": "hooked", "assignee": "st/polecats/d"},
    ])
    assert work == {"st/polecats/a": ("st-7", "hooked"), "st/polecats/c": ("st-2", "in_progress")}


# --- rows 13, 17: report-only plan ------------------------------------------------------
LIMITS = Limits(gupp_timeout=1800, spawn_grace=300, mass_death_count=3, mass_death_window=30)


def lfacts(name: str = "nux", **kw: object) -> PolecatFacts:
    base = dict(session=f"st-{name}", address=f"stockdrop/{name}", rig="stockdrop",
                name=name, bead_id=f"st-stockdrop-polecat-{name}", liveness=Liveness.MISSING,
                hook_bead="st-abc", agent_state="working", updated_at=0.0,
                hooked_status="hooked")
    base.update(kw)
    return PolecatFacts(**base)  # type: ignore[arg-type]


def tracker() -> RestartTracker:
    return RestartTracker(Path("/nonexistent/restart_state.json"), Policy())


def lplan(sweeps: list[list[PolecatFacts]], start: float = 1000.0):
    state, track = SweepState(), tracker()
    for i, sweep in enumerate(sweeps):
        plan = plan_sweep(sweep, state, track, LIMITS, start + i, report_only=True)
        for step in plan.polecats:
            for mail in step.mails:
                plan.state.incidents[mail.key] = mail.value
        state, track = plan.state, plan.tracker
        yield plan


def test_a_crash_is_reported_once_per_death_and_never_restarted() -> None:
    plans = list(lplan([[lfacts()]] * 3))
    first = plans[0].polecats[0]
    assert first.act is Act.REPORT and first.session_death
    assert [m.subject for m in first.mails] == ["CRASHED_POLECAT: stockdrop/nux detected"]
    assert first.mails[0].body == (
        "Polecat nux crash detected (session dead, work on hook).\n\nhook_bead: st-abc\n\n"
        "Restart deferred to stuck-agent-dog plugin for context-aware recovery.")
    assert any("CRASH DETECTED" in text for _, text in first.logs)
    for later in plans[1:]:
        step = later.polecats[0]
        assert step.act is Act.REPORT and not step.session_death and not step.mails
    assert all(p.polecats[0].act is not Act.RESTART for p in plans)
    assert not plans[-1].tracker.agents  # nothing booked as a restart


def test_a_new_death_after_a_run_is_reported_again() -> None:
    alive = lfacts(liveness=Liveness.RUNNING)
    plans = list(lplan([[lfacts()], [alive], [lfacts()]]))
    assert plans[0].polecats[0].session_death and plans[2].polecats[0].session_death
    assert plans[2].polecats[0].mails


@pytest.mark.parametrize("quiet", [
    dict(hook_bead=""), dict(agent_state="done"), dict(agent_state="nuked"),
    dict(heartbeat_state="exiting"), dict(heartbeat_state="idle"),
    dict(hooked_status="closed"), dict(hooked_status=None), dict(hooked_status="tombstone"),
    dict(agent_state="spawning", updated_at=900.0), dict(agent_state="spawning", updated_at=None),
    dict(busy=True),
])
def test_not_a_crash(quiet: dict[str, object]) -> None:
    step = next(lplan([[lfacts(**quiet)]])).polecats[0]
    assert step.act is Act.NOTHING and not step.mails and not step.session_death


def test_a_zombie_is_reported_not_killed() -> None:
    step = next(lplan([[lfacts(liveness=Liveness.ZOMBIE)]])).polecats[0]
    assert step.act is Act.REPORT and not step.kill_first


def test_mass_death_still_counts_in_l() -> None:
    plan = next(lplan([[lfacts("a"), lfacts("b"), lfacts("c")]]))
    assert plan.mass_death == ("st-a", "st-b", "st-c")


# --- row 11: one place for defaults, an operator's setting wins ---------------------------
def test_l_defaults_replace_only_unset_knobs() -> None:
    plain = load_with_sources({})[0]
    assert plain.heartbeat_kill == default_of("heartbeat_kill") == 1800.0
    l_town = plain.for_dialect("l")
    assert (l_town.heartbeat_nudge, l_town.heartbeat_kill, l_town.deacon_grace) == \
        (300.0, 1200.0, 300.0)
    assert plain.for_dialect("j") == plain
    mine = load_with_sources({"GT_DEACON_HEARTBEAT_KILL": "40m"})[0].for_dialect("l")
    assert (mine.heartbeat_nudge, mine.heartbeat_kill) == (300.0, 2400.0)
    flagged = load_with_sources({}, {"heartbeat_nudge": 600.0})[0].for_dialect("l")
    assert (flagged.heartbeat_nudge, flagged.heartbeat_kill) == (600.0, 1200.0)
    assert set(DIALECT_DEFAULTS["l"]) == {"heartbeat_nudge", "heartbeat_kill", "deacon_grace"}


def test_an_operator_knob_that_cannot_fit_l_defaults_is_a_config_error() -> None:
    settings = load_with_sources({"GT_DEACON_HEARTBEAT_NUDGE": "25m"})[0].for_dialect("l")
    with pytest.raises(ConfigError):
        settings.check()


def test_explicit_does_not_change_equality() -> None:
    assert Settings() == load_with_sources({})[0]


# --- row 12: restart_state.json -----------------------------------------------------------
def test_deacon_entry_round_trip_keeps_other_keys_and_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "restart_state.json"
    path.write_text(json.dumps({"agents": {"other": {"restart_count": 2}}, "extra": 1}))
    write_deacon(path, DeaconRestarts(last_restart=100.0, restart_count=1))
    data = json.loads(path.read_text())
    assert data["extra"] == 1 and data["agents"]["other"] == {"restart_count": 2}
    assert data["agents"]["deacon"] == {
        "last_restart": "1970-01-01T00:01:40Z", "restart_count": 1, "backoff_until": ZERO,
        "crash_loop_since": ZERO}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_deacon(path) == DeaconRestarts(100.0, 1, None, None)
    assert path.read_text().startswith('{\n  "agents"')


def test_backoff_and_crash_loop() -> None:
    entry = DeaconRestarts()
    for n in range(1, 6):
        entry = entry.after_restart(1000.0 + n)
        assert entry.restart_count == n
    assert entry.backoff_until == 1005.0 + 480.0  # 30 s x 2^4
    assert entry.crash_loop_since == 1005.0
    why = entry.blocked(5000.0)
    assert why is not None and "crash loop" in why and CLEAR_COMMAND in why
    assert DeaconRestarts(backoff_until=100.0).blocked(50.0) == "backing off for 50s more"
    assert DeaconRestarts(backoff_until=100.0).blocked(150.0) is None
    stale = DeaconRestarts(last_restart=0.0, restart_count=4).after_restart(4000.0)
    assert stale.restart_count == 1  # previous restart > 30 min ago: count reset


def test_restart_tracker_settings_of_daemon_json() -> None:
    """§6.10: ns durations, a float multiplier, an int count; ≤ 0 or missing: default."""
    policy, problems = tracker_policy({"patrols": {"restart_tracker": {
        "initial_backoff": 5_000_000_000, "max_backoff": 60_000_000_000,
        "backoff_multiplier": 4, "crash_loop_count": 2, "stability_period": 600_000_000_000,
        "crash_loop_window": 1, "pause_backoff": 1}}})
    assert problems == []
    assert policy == TrackerPolicy(initial=5.0, cap=60.0, multiplier=4.0, loop_count=2,
                                   stable=600.0)
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [5.0, 20.0, 60.0, 60.0]
    entry = DeaconRestarts().after_restart(100.0, policy).after_restart(101.0, policy)
    assert entry.backoff_until == 121.0 and entry.crash_loop_since == 101.0
    assert DeaconRestarts(last_restart=0.0, restart_count=1).after_restart(
        601.0, policy).restart_count == 1  # the town's stability period, not 30 min
    for absent in (None, {}, {"patrols": {}}, {"patrols": {"restart_tracker": {}}},
                   {"patrols": {"restart_tracker": {"initial_backoff": 0,
                                                    "backoff_multiplier": -1.0,
                                                    "crash_loop_count": -3}}}):
        assert tracker_policy(absent) == (TrackerPolicy(), [])
    assert TrackerPolicy() == TrackerPolicy(30.0, 600.0, 2.0, 5, 1800.0)  # Gas Town's
    policy, problems = tracker_policy({"patrols": {"restart_tracker": {
        "initial_backoff": 1.5e9, "max_backoff": "10m", "backoff_multiplier": float("nan"),
        "crash_loop_count": True, "stability_period": [1]}}})
    assert policy == TrackerPolicy()
    assert [p.split(" must ")[0] for p in problems] == [
        f"patrols.restart_tracker.{k}" for k in ("initial_backoff", "max_backoff",
                                                 "backoff_multiplier", "crash_loop_count",
                                                 "stability_period")]
    assert tracker_policy({"patrols": {"restart_tracker": []}})[1] == [
        "patrols.restart_tracker must be an object"]
    policy, problems = tracker_policy({"patrols": {"restart_tracker": {
        "initial_backoff": 10**400, "backoff_multiplier": 10**400,
        "crash_loop_count": 2**63}}})  # beyond Go's int64: named, not an OverflowError
    assert policy == TrackerPolicy() and len(problems) == 3
    huge = TrackerPolicy(multiplier=1e300)
    assert huge.backoff(1) == 30.0 and huge.backoff(1000) == 600.0  # no overflow


def test_damaged_restart_state_is_not_read_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "restart_state.json"
    path.write_text('{"agents": [1]}')
    with pytest.raises(DamagedFile):
        read_deacon(path)


def test_our_tracker_keeps_the_l_deacon_entry_and_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "restart_state.json"
    l_entry = {"last_restart": "2026-06-01T10:00:00Z", "restart_count": 5,
               "backoff_until": "2026-06-01T10:08:00Z",
               "crash_loop_since": "2026-06-01T10:00:00Z"}
    path.write_text(json.dumps({"agents": {"deacon": l_entry}, "note": "kept"}, indent=2))
    os.chmod(path, 0o600)
    track = RestartTracker(path, Policy())
    track.load()
    track.record("st-nux", 5000.0)
    track.save()
    data = json.loads(path.read_text())
    assert data["agents"]["deacon"] == l_entry and data["note"] == "kept"
    assert "window_start" in data["agents"]["st-nux"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_our_tracker_does_not_rewrite_an_unchanged_file(tmp_path: Path) -> None:
    path = tmp_path / "restart_state.json"
    write_deacon(path, DeaconRestarts(100.0, 1, 130.0, None))
    before = path.stat().st_mtime_ns, path.stat().st_ino
    track = RestartTracker(path, Policy())
    track.load()
    track.save()
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before


# --- §1.5b session heartbeats --------------------------------------------------------------
def test_session_heartbeat(tmp_path: Path) -> None:
    (tmp_path / "mayor").mkdir()
    (tmp_path / "mayor" / "town.json").write_text("{}")
    town = Town(tmp_path)
    beats = tmp_path / ".runtime" / "heartbeats"
    beats.mkdir(parents=True)
    assert read_session_heartbeat(town, "st-a").state == ""
    (beats / "st-a.json").write_text('{"timestamp":"2026-06-01T10:00:00.5Z","state":"exiting"}')
    assert read_session_heartbeat(town, "st-a").state == "exiting"
    (beats / "st-b.json").write_text('{"timestamp":"2026-06-01T10:00:00Z"}')
    assert read_session_heartbeat(town, "st-b").state == "working"
    (beats / "st-c.json").write_text('{"state":"asleep"}')
    assert read_session_heartbeat(town, "st-c").state == ""
    (beats / "st-d.json").write_text("{nope")
    bad = read_session_heartbeat(town, "st-d")
    assert bad.state == "" and bad.problem


def test_our_tracker_never_overwrites_a_deacon_entry_written_meanwhile(tmp_path: Path) -> None:
    """Race: deacon-keeper (or `gt daemon clear-backoff deacon`) writes the deacon entry
    between polecat-health's load and save; so does a new key of another writer."""
    path = tmp_path / "restart_state.json"
    write_deacon(path, DeaconRestarts(100.0, 5, 130.0, 100.0))
    track = RestartTracker(path, Policy())
    track.load()
    write_deacon(path, DeaconRestarts(100.0, 0, None, None))  # cleared meanwhile
    data = json.loads(path.read_text())
    data["agents"]["other"] = {"restart_count": 3}
    path.write_text(json.dumps(data))
    track.record("st-nux", 5000.0)
    track.save()
    agents = json.loads(path.read_text())["agents"]
    assert agents["deacon"]["restart_count"] == 0 and agents["deacon"]["crash_loop_since"] == ZERO
    assert agents["other"] == {"restart_count": 3} and agents["st-nux"]["restart_count"] == 1


# --- row 14 with the stand-in bd: town DB first, then routing ----------------------------
STANDIN_BD = Path(__file__).resolve().parents[1] / "standins" / "bd"


def _seed(db: Path, issues: list[dict[str, object]]) -> None:
    base = {"status": "open", "priority": 2, "issue_type": "task",
            "created_at": "2026-06-01T10:00:00Z", "updated_at": "2026-06-01T10:00:00Z"}
    lines = [json.dumps({**base, **i}, separators=(",", ":")) for i in
             sorted(issues, key=lambda i: str(i["id"]))]
    (db / "issues.jsonl").write_text("".join(line + "\n" for line in lines))


def test_l_listings_with_the_standin_bd(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.harness.town import make_town
    town = make_town(tmp_path / "town")
    (town / ".standin").mkdir()
    (town / ".standin" / "bd.mode").write_text("N\n")
    for key in [k for k in os.environ if k.startswith(("BEADS_", "BD_", "GT_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("BD_STANDIN_TOWN", str(town))
    rig_db = town / "gastown" / "mayor" / "rig" / ".beads"
    desc = "Polecat {n}\n\nagent_state: working\nhook_bead: gt-old"
    _seed(town / ".beads", [{"id": "gt-gastown-polecat-new", "title": "new",
                             "labels": ["gt:agent"], "description": desc.format(n="new")}])
    _seed(rig_db, [
        {"id": "gt-gastown-polecat-old", "title": "old", "issue_type": "agent",
         "labels": ["gt:agent"], "description": desc.format(n="old")},
        {"id": "gt-w1", "title": "w", "status": "in_progress",
         "assignee": "gastown/polecats/new"},
        {"id": "gt-old", "title": "done", "status": "closed",
         "assignee": "gastown/polecats/old"}])
    beads = Beads(binary=str(STANDIN_BD), cwd=town, timeout=30)
    listed = {a.id for a in beads.at(town / ".beads").list_agents_l()}
    assert listed == {"gt-gastown-polecat-new"}
    assert assigned_work(beads.at(rig_db).work_in_progress()) == \
        {"gastown/polecats/new": ("gt-w1", "in_progress")}


FAKE_BD = """#!/usr/bin/env python3
# bd 1.0.5 show as gastown-2026.md 4.6 has it: the pinned store, or prefix routing
import json, os, sys
log, answers = sys.argv[0] + ".log", json.load(open(sys.argv[0] + ".json"))
pinned = os.environ.get("BEADS_DIR", "")
with open(log, "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "pinned": pinned}) + "\\n")
if sys.argv[1] == "list":
    print(json.dumps(answers.get("list", [])))
    sys.exit(0)
key = ("town:" if pinned else "routed:") + sys.argv[2]
if key in answers:
    print(json.dumps([answers[key]]))
    sys.exit(0)
if answers.get("fail"):
    print("Error: dolt server unreachable", file=sys.stderr)
    sys.exit(1)
print(json.dumps({"error": "no issues found matching the provided IDs", "schema_version": 1}))
print("Error fetching %s: no issue found matching %s" % (sys.argv[2], sys.argv[2]),
      file=sys.stderr)
sys.exit(1)
"""


def fake_bd(tmp_path: Path, answers: dict[str, object]) -> tuple[Beads, Path]:
    script = tmp_path / "bd"
    script.write_text(FAKE_BD)
    script.chmod(0o755)
    (tmp_path / "bd.json").write_text(json.dumps(answers))
    return Beads(binary=str(script), cwd=tmp_path, timeout=30), tmp_path / "bd.log"


def calls(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_agent_l_reads_the_town_db_first_then_routes(tmp_path: Path) -> None:
    town_db, rig_db = tmp_path / "town" / ".beads", tmp_path / "rig" / ".beads"
    town_db.mkdir(parents=True)
    rig_db.mkdir(parents=True)
    new = {"id": "gt-gastown-polecat-new", "issue_type": "task", "labels": ["gt:agent"],
           "description": "Polecat new\n\nagent_state: working\nhook_bead: gt-stale"}
    old = {"id": "gt-gastown-polecat-old", "issue_type": "agent", "hook_bead": "gt-9",
           "description": "Polecat old\n\nagent_state: spawning"}
    beads, log = fake_bd(tmp_path, {
        "town:gt-gastown-polecat-new": new, "routed:gt-gastown-polecat-old": old,
        "list": [{"id": "gt-w1", "status": "in_progress", "assignee": "gastown/polecats/new"}]})
    got = beads.agent_l("gt-gastown-polecat-new", town_db)
    assert got is not None and got.agent_state == "working"
    assert [c["pinned"] for c in calls(log)] == [str(town_db)]  # found: no second call
    got = beads.agent_l("gt-gastown-polecat-old", town_db)
    assert got is not None and got.agent_state == "spawning"
    assert [c["pinned"] for c in calls(log)][1:] == [str(town_db), ""]  # then routing
    assert beads.agent_l("gt-gastown-polecat-none", town_db) is None
    # the work: the column when bd has it, else the assignee's; a description line is no proof
    assert beads.polecat_hook_l("gt-gastown-polecat-old", "gastown/polecats/old", town_db,
                                rig_db) == "gt-9"
    assert beads.polecat_hook_l("gt-gastown-polecat-new", "gastown/polecats/new", town_db,
                                rig_db) == "gt-w1"
    listing = calls(log)[-1]
    assert listing["pinned"] == str(rig_db) and "--status=hooked,in_progress" in \
        listing["argv"]  # type: ignore[operator]


def test_agent_l_failing_read_is_unknown(tmp_path: Path) -> None:
    beads, _ = fake_bd(tmp_path, {"fail": True})
    with pytest.raises(ToolError):
        beads.agent_l("gt-gastown-polecat-new", tmp_path / ".beads")


def test_status_shows_gas_towns_deacon_crash_loop_with_its_command(tmp_path: Path) -> None:
    from gastown_units.status import AgentRow, restart_records
    from gastown_units.town.identity import DEACON
    (tmp_path / "daemon").mkdir()
    write_deacon(tmp_path / "daemon" / "restart_state.json",
                 DeaconRestarts(100.0, 5, 130.0, 100.0))
    records, problem = restart_records(Town(tmp_path), 200.0)
    assert problem is None and records["deacon"] == (5, "crash loop")
    row = AgentRow(DEACON, "missing", None, "", restarts=5, backoff="crash loop",
                   expected=True)
    assert row.problem is not None and CLEAR_COMMAND in row.problem


def test_clear_deacon_is_gt_daemon_clear_backoff(tmp_path: Path) -> None:
    from gastown_units.town.restart_state import clear_deacon
    path = tmp_path / "restart_state.json"
    write_deacon(path, DeaconRestarts(100.0, 5, 130.0, 100.0))
    assert clear_deacon(path)
    assert read_deacon(path) == DeaconRestarts(100.0, 0, None, None)
    assert not clear_deacon(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
