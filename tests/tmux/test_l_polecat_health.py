"""polecat-health in an [L] town (gastown-2026.md §4.1-§4.3, §5.5, §5.6, §6.5; §8 rows
13-17): agent beads from the town DB, work from assignees, crashes reported once and never
restarted. Real tmux on a private socket, the stand-in ``bd`` in its bd >= 1.0 mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from gastown_units.ports.agent_locks import AgentLocks
from tests.harness import keeper
from tests.harness.poll import poll_until
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import AGENT, STANDINS, agent_record

RIG = "gastown"
L_ENV = {"GT_DIALECT": "l"}


def l_town(town: Path) -> Path:
    standin = town / ".standin"
    standin.mkdir(exist_ok=True)
    (standin / "bd.mode").write_text("N\n")
    (standin / "gt.dialect").write_text("L\n")
    return town


def bd_at(town: Path, db: Path | None, *args: str, cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BEADS_", "GT_", "BD_"))}
    if db is not None:
        env["BEADS_DIR"] = str(db)
    return subprocess.run([str(STANDINS / "bd"), *args], cwd=cwd or town, env=env,
                          capture_output=True, text=True, timeout=30, check=True).stdout


def work(town: Path, name: str, status: str = "hooked", assignee: str | None = None) -> str:
    """A work bead in the rig DB, assigned as [L]'s sling does (status + assignee)."""
    issue = json.loads(bd_at(town, None, "create", f"--title=work for {name}", "--type=task",
                             "--json", cwd=town / RIG))["id"]
    bd_at(town, None, "update", issue, f"--status={status}",
          f"--assignee={assignee or f'{RIG}/polecats/{name}'}")
    return str(issue)


def agent_bead(town: Path, name: str, *, state: str = "working", hook: str = "",
               db: Path | None = None) -> str:
    """The polecat's agent bead, where [L] keeps it (the town DB): a task labelled gt:agent,
    ``hook_bead`` only in its description (bd >= 0.62 has no such column)."""
    bead = f"gt-{RIG}-polecat-{name}"
    bd_at(town, db or town / ".beads", "create", "--json", f"--id={bead}",
          f"--title=Polecat {name}", "--type=task", "--labels=gt:agent", "--force",
          f"--description=Polecat {name}\n\nrole_type: polecat\nrig: {RIG}\n"
          f"agent_state: {state}\nhook_bead: {hook}")
    return bead


def polecat(town: Path, server: PrivateTmux, name: str) -> Path:
    """A running [L] polecat session ``gt-<name>`` (prefix-named, §3.1)."""
    tree = town / RIG / "polecats" / name
    tree.mkdir(parents=True, exist_ok=True)
    server.tmux("new-session", "-d", "-s", f"gt-{name}", "-c", str(tree),
                f"exec {sys.executable} {AGENT}")
    poll_until(lambda: (p := server.pane(f"gt-{name}")) and p[1] == "claude"
               and (r := agent_record(tree)) and r["pid"] == p[0],
               timeout=20, what=f"polecat {name}")
    return tree


def die(server: PrivateTmux, name: str) -> None:
    server.tmux("kill-session", "-t", f"=gt-{name}")
    poll_until(lambda: f"gt-{name}" not in server.sessions(), timeout=20, what="session gone")


def sweep(town: Path, server: PrivateTmux, *args: str) -> subprocess.CompletedProcess[str]:
    result = keeper.run_once("polecat-health", town, server.socket, *args, env=L_ENV)
    assert result.returncode == 0, result.stderr
    return result


def inbox(town: Path, to: str) -> list[dict]:
    out = subprocess.run([str(STANDINS / "gt"), "mail", "inbox", "--identity", to, "--json"],
                         cwd=town, capture_output=True, text=True, timeout=30).stdout
    return json.loads(out) or []


def events(town: Path, kind: str) -> list[dict]:
    path = town / ".events.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e["type"] == kind]


def bd_calls(town: Path, command: str) -> list[dict]:
    path = town / ".standin" / "calls.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [c for c in map(json.loads, lines)
            if c["tool"] == "bd" and command in c["argv"][:2]]


def heartbeat(town: Path, session: str, state: str) -> None:
    beats = town / ".runtime" / "heartbeats"
    beats.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    (beats / f"{session}.json").write_text(json.dumps({"timestamp": now, "state": state}))


def test_a_crash_is_reported_once_and_never_restarted(town: Path,
                                                      tmux_server: PrivateTmux) -> None:
    l_town(town)
    issue = work(town, "nux")
    agent_bead(town, "nux", hook=issue)
    polecat(town, tmux_server, "nux")
    die(tmux_server, "nux")
    first = sweep(town, tmux_server)
    assert "CRASH DETECTED: polecat gastown/nux" in first.stderr
    assert "gt-nux" not in tmux_server.sessions()  # [L]: never restarted by us
    mails = inbox(town, f"{RIG}/witness")
    assert [m["subject"] for m in mails] == ["CRASHED_POLECAT: gastown/nux detected"]
    assert mails[0]["body"] == (
        f"Polecat nux crash detected (session dead, work on hook).\n\nhook_bead: {issue}\n\n"
        "Restart deferred to stuck-agent-dog plugin for context-aware recovery.")
    deaths = events(town, "session_death")
    assert len(deaths) == 1
    assert deaths[0]["actor"] == "gt-nux" and deaths[0]["visibility"] == "feed"
    assert deaths[0]["payload"] == {"session": "gt-nux", "agent": f"{RIG}/polecats/nux",
                                    "reason": "crash detected by daemon health check",
                                    "caller": "daemon"}
    assert "1 crash(es) reported" in first.stderr or "reported" in first.stdout + first.stderr
    sweep(town, tmux_server)  # the same death: no second mail, no second event
    assert len(inbox(town, f"{RIG}/witness")) == 1
    assert len(events(town, "session_death")) == 1
    assert "gt-nux" not in tmux_server.sessions()


def test_work_comes_from_assignees_with_few_bd_calls(town: Path,
                                                     tmux_server: PrivateTmux) -> None:
    """Row 15: one list per store; a stale description hook is no proof of work."""
    l_town(town)
    names = ["a", "b", "c", "d"]
    done_work = work(town, "d", status="closed")
    for name in names[:3]:
        agent_bead(town, name, hook=work(town, name, status="in_progress"))
        polecat(town, tmux_server, name)
    agent_bead(town, "d", hook=done_work)  # description still names closed work
    polecat(town, tmux_server, "d")
    for name in names:
        die(tmux_server, name)
    calls_before = len(bd_calls(town, "list")) + len(bd_calls(town, "show"))
    result = sweep(town, tmux_server)
    subjects = sorted(m["subject"] for m in inbox(town, f"{RIG}/witness"))
    assert subjects == [f"CRASHED_POLECAT: gastown/{n} detected" for n in names[:3]]
    assert len(events(town, "mass_death")) == 1  # three deaths within 30 s
    lists = bd_calls(town, "list")
    shows = bd_calls(town, "show")
    used = len(lists) + len(shows) - calls_before
    # town-DB agents, rig-DB agents, rig-DB work, rig bead: whatever the polecat count
    assert used <= 4, (result.stderr, lists[-4:])
    assert any("--status=hooked,in_progress" in c["argv"] for c in lists)
    town_lists = [c for c in lists if c["env"].get("BEADS_DIR") == str(town / ".beads")]
    assert any("--label=gt:agent" in c["argv"] and "--include-infra" in c["argv"]
               for c in town_lists)


def test_a_done_polecat_that_ended_its_own_session_is_no_crash(
        town: Path, tmux_server: PrivateTmux) -> None:
    """Row 17: ``gt done`` writes heartbeat ``exiting``, closes the work, sets ``done``,
    then kills its own session (§5.6)."""
    l_town(town)
    one = work(town, "exiter")  # still hooked: gt done died between heartbeat and close
    agent_bead(town, "exiter", hook=one)
    two = work(town, "finisher")
    agent_bead(town, "finisher", state="done", hook=two)
    agent_bead(town, "crashed", hook=work(town, "crashed"))  # the control: a real crash
    for name in ("exiter", "finisher", "crashed"):
        polecat(town, tmux_server, name)
    heartbeat(town, "gt-exiter", "exiting")
    heartbeat(town, "gt-crashed", "working")
    for name in ("exiter", "finisher", "crashed"):
        die(tmux_server, name)
    result = sweep(town, tmux_server)
    assert "CRASH DETECTED: polecat gastown/crashed" in result.stderr
    assert "gastown/exiter" not in result.stderr.split("CRASH DETECTED")[-1]
    assert [m["subject"] for m in inbox(town, f"{RIG}/witness")] == \
        ["CRASHED_POLECAT: gastown/crashed detected"]
    assert [e["actor"] for e in events(town, "session_death")] == ["gt-crashed"]
    assert not {"gt-exiter", "gt-finisher", "gt-crashed"} & tmux_server.sessions()


def test_an_agent_bead_left_in_the_rig_db_is_still_found(town: Path,
                                                         tmux_server: PrivateTmux) -> None:
    """Row 14: a town upgraded from [J] keeps older agent beads in rig DBs."""
    l_town(town)
    issue = work(town, "old")
    agent_bead(town, "old", hook=issue, db=town / RIG / "mayor" / "rig" / ".beads")
    polecat(town, tmux_server, "old")
    die(tmux_server, "old")
    sweep(town, tmux_server)
    assert [m["subject"] for m in inbox(town, f"{RIG}/witness")] == \
        ["CRASHED_POLECAT: gastown/old detected"]


def test_another_service_acting_on_the_polecat_defers_the_verdict(
        town: Path, tmux_server: PrivateTmux) -> None:
    """Race: the witness holds the polecat's lock (e.g. restarting it with gt session
    restart): nothing is reported while it acts; a real death is reported afterwards."""
    l_town(town)
    agent_bead(town, "nux", hook=work(town, "nux"))
    polecat(town, tmux_server, "nux")
    die(tmux_server, "nux")
    witness = AgentLocks(town / "daemon" / "agents", "witness@gastown")
    assert witness.acquire("gt-nux", "restart")
    try:
        sweep(town, tmux_server)
        assert inbox(town, f"{RIG}/witness") == []
        assert events(town, "session_death") == []
    finally:
        witness.release_all()
    sweep(town, tmux_server)
    assert len(inbox(town, f"{RIG}/witness")) == 1


def test_a_polecat_restarted_by_the_witness_before_the_sweep_is_left_alone(
        town: Path, tmux_server: PrivateTmux) -> None:
    """Race: the witness restarted it (stale crash trigger): no report, no second copy."""
    l_town(town)
    agent_bead(town, "nux", hook=work(town, "nux"))
    agent_bead(town, "gone", hook=work(town, "gone"))
    polecat(town, tmux_server, "nux")
    polecat(town, tmux_server, "gone")
    die(tmux_server, "nux")
    die(tmux_server, "gone")
    polecat(town, tmux_server, "nux")  # back, by someone else
    pid = tmux_server.pane("gt-nux")
    sweep(town, tmux_server)
    assert tmux_server.pane("gt-nux") == pid
    assert [m["subject"] for m in inbox(town, f"{RIG}/witness")] == \
        ["CRASHED_POLECAT: gastown/gone detected"]
    assert "gt-gone" not in tmux_server.sessions()


def test_bd_failing_is_unknown_not_dead(town: Path, tmux_server: PrivateTmux) -> None:
    l_town(town)
    agent_bead(town, "nux", hook=work(town, "nux"))
    polecat(town, tmux_server, "nux")
    die(tmux_server, "nux")
    (town / ".standin" / "bd.fail.list").write_text("dolt server unreachable")
    result = keeper.run_once("polecat-health", town, tmux_server.socket, env=L_ENV)
    assert "bd failed" in result.stderr
    assert inbox(town, f"{RIG}/witness") == []
    (town / ".standin" / "bd.fail.list").unlink()
    sweep(town, tmux_server)
    assert len(inbox(town, f"{RIG}/witness")) == 1
