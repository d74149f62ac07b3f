"""polecat-health sweeps against real tmux, real git worktrees and the stand-ins."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.harness import keeper
from tests.harness.gitrig import add_polecat, make_rig_repos
from tests.harness.poll import poll_until
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import AGENT, STANDINS, agent_record, bd, control_agent, hook_work, rig_db

RIG = "gastown"
NO_BACKOFF = ("--restart-backoff", "0")


def polecat(town: Path, server: PrivateTmux, name: str, *, hooked: bool = True) -> Path:
    """A polecat with a worktree, a running session and (by default) hooked work."""
    if not (town / RIG / ".repo.git").exists():
        make_rig_repos(town / RIG)
    tree = add_polecat(town / RIG, RIG, name)
    if hooked:
        hook_work(town, RIG, name)
    server.tmux("new-session", "-d", "-s", f"gt-{RIG}-{name}", "-c", str(tree),
                f"exec {sys.executable} {AGENT}")
    poll_until(lambda: (p := server.pane(f"gt-{RIG}-{name}")) and p[1] == "claude"
               and (r := agent_record(tree)) and r["pid"] == p[0],
               timeout=20, what=f"polecat {name}")
    return tree


def crash(server: PrivateTmux, tree: Path, name: str) -> None:
    control_agent(tree, "crash")
    poll_until(lambda: f"gt-{RIG}-{name}" not in server.sessions(), timeout=20,
               what=f"{name}'s session to close")


def sweep(town: Path, server: PrivateTmux, *args: str,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return keeper.run_once("polecat-health", town, server.socket, *args, env=env)


def mails(town: Path, to: str) -> list[str]:
    out = subprocess.run([str(STANDINS / "gt"), "mail", "inbox", "--identity", to, "--json"],
                         cwd=town, capture_output=True, text=True, timeout=30).stdout
    return [m["subject"] for m in json.loads(out) or []]


def events(town: Path, kind: str) -> list[dict]:
    path = town / ".events.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e["type"] == kind]


def test_crashed_polecat_with_hooked_work_is_restarted(town: Path,
                                                       tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")
    first = agent_record(tree)["pid"]
    crash(tmux_server, tree, "nux")
    result = sweep(town, tmux_server)
    assert result.returncode == 0, result.stderr
    assert "CRASH DETECTED: polecat gastown/nux has hook_bead=" in result.stderr
    record = poll_until(lambda: (r := agent_record(tree)) and r["pid"] != first and r,
                        timeout=30, what="restarted polecat agent")
    env = record["env"]
    assert (env["GT_ROLE"], env["GT_RIG"], env["GT_POLECAT"]) == ("polecat", RIG, "nux")
    assert (env["BD_ACTOR"], env["BEADS_NO_DAEMON"]) == (f"{RIG}/polecats/nux", "1")
    hooks = tmux_server.tmux("show-hooks", "-w", "-t", f"=gt-{RIG}-nux:").stdout
    assert "gt log crash --agent 'gastown/nux'" in hooks
    state = json.loads((town / "daemon" / "restart_state.json").read_text())
    assert state["agents"][f"gt-{RIG}-nux"]["restart_count"] == 1


def test_dead_polecats_without_reason_to_restart_stay_dead(town: Path,
                                                           tmux_server: PrivateTmux) -> None:
    idle = polecat(town, tmux_server, "idle", hooked=False)
    done = polecat(town, tmux_server, "done")
    bd(town, "update", f"gt-{RIG}-polecat-done",
       "--description=Polecat done\n\nagent_state: done")
    bd(town, "agent", "state", f"gt-{RIG}-polecat-done", "done")
    closed = polecat(town, tmux_server, "closed")
    issue = json.loads(bd(town, "show", f"gt-{RIG}-polecat-closed", "--json"))[0]["hook_bead"]
    bd(town, "close", issue)
    for name, tree in (("idle", idle), ("done", done), ("closed", closed)):
        crash(tmux_server, tree, name)
    result = sweep(town, tmux_server)
    assert result.returncode == 0, result.stderr
    assert "0 restarted" in result.stderr or "CRASH DETECTED" not in result.stderr
    assert tmux_server.sessions() == set()


def test_missing_worktree_mails_orphaned_work_and_crashed_polecat_once(
        town: Path, tmux_server: PrivateTmux) -> None:
    """[J] §6.6: every dead polecat with hooked work is ORPHANED_WORK, once per incident."""
    tree = polecat(town, tmux_server, "nux")
    crash(tmux_server, tree, "nux")
    subprocess.run(["git", "-C", str(town / RIG / ".repo.git"), "worktree", "remove",
                    "--force", str(tree)], check=True, capture_output=True)
    (town / RIG / "polecats" / "nux").mkdir(exist_ok=True)
    first = sweep(town, tmux_server)
    assert first.returncode == 1 and "worktree missing" in first.stderr
    assert "Traceback" not in first.stderr
    assert sorted(mails(town, f"{RIG}/witness")) == sorted([
        "CRASHED_POLECAT: gastown/nux restart failed",
        f"ORPHANED_WORK: gt-{RIG}-polecat-nux has hooked work but is dead"])
    for _ in range(2):  # backing off now: nothing new for the witness
        assert sweep(town, tmux_server).returncode == 0
    subjects = mails(town, f"{RIG}/witness")
    assert sorted(subjects) == sorted([
        "CRASHED_POLECAT: gastown/nux restart failed",
        f"ORPHANED_WORK: gt-{RIG}-polecat-nux has hooked work but is dead"])


def test_three_deaths_in_30s_make_one_mass_death_event(town: Path,
                                                       tmux_server: PrivateTmux) -> None:
    trees = {n: polecat(town, tmux_server, n) for n in ("a1", "b2", "c3")}
    for name, tree in trees.items():  # one death per oneshot run: the window persists
        crash(tmux_server, tree, name)
        assert sweep(town, tmux_server, *NO_BACKOFF).returncode == 0
    found = events(town, "mass_death")
    assert len(found) == 1
    event = found[0]
    assert (event["actor"], event["visibility"], event["source"]) == ("daemon", "feed", "gt")
    assert event["payload"]["count"] == 3 and event["payload"]["window"] == "30s"
    assert sorted(event["payload"]["sessions"]) == [f"gt-{RIG}-{n}" for n in ("a1", "b2", "c3")]
    assert sweep(town, tmux_server, *NO_BACKOFF).returncode == 0
    assert len(events(town, "mass_death")) == 1


def test_crash_loop_stops_restarts_until_cleared(town: Path, tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")
    args = (*NO_BACKOFF, "--crash-loop-restarts", "3")
    for _ in range(3):
        crash(tmux_server, tree, "nux")
        assert sweep(town, tmux_server, *args).returncode == 0
        poll_until(lambda: tmux_server.pane(f"gt-{RIG}-nux"), timeout=20, what="restart")
    crash(tmux_server, tree, "nux")
    looped = sweep(town, tmux_server, *args)
    assert "CRASH LOOP" in looped.stderr and "clear-backoff" in looped.stderr
    assert f"gt-{RIG}-nux" not in tmux_server.sessions()
    assert f"CRASH_LOOP: {RIG}/nux restarts stopped" in mails(town, f"{RIG}/witness")
    assert f"gt-{RIG}-nux" not in tmux_server.sessions()
    sweep(town, tmux_server, *args)
    assert f"gt-{RIG}-nux" not in tmux_server.sessions()
    cleared = subprocess.run(
        [sys.executable, "-m", "gastown_units", "clear-backoff", "gt-gastown-polecat-nux",
         "--town", str(town)], capture_output=True, text=True, timeout=30,
        env=keeper.service_env())
    assert cleared.returncode == 0 and "cleared restart backoff of gastown/nux" in cleared.stdout
    assert sweep(town, tmux_server, *args).returncode == 0
    assert f"gt-{RIG}-nux" in tmux_server.sessions()


def test_bd_outage_means_zero_restarts(town: Path, tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")
    crash(tmux_server, tree, "nux")
    (town / ".standin" / "bd.fail").write_text("database is locked")
    failed = sweep(town, tmux_server)
    assert failed.returncode == 1 and "no polecat is restarted" in failed.stderr
    (town / ".standin" / "bd.fail").unlink()
    (town / ".standin" / "bd.hang").touch()
    started = time.monotonic()
    hung = sweep(town, tmux_server, "--bd-timeout", "1")
    assert hung.returncode == 1 and time.monotonic() - started < 60
    assert "no answer within 1s" in hung.stderr and "Traceback" not in hung.stderr
    assert tmux_server.sessions() == set()
    (town / ".standin" / "bd.hang").unlink()
    assert sweep(town, tmux_server).returncode == 0
    assert f"gt-{RIG}-nux" in tmux_server.sessions()


def test_gupp_violation_is_mailed_once(town: Path, tmux_server: PrivateTmux) -> None:
    polecat(town, tmux_server, "nux")
    store = rig_db(town, RIG)
    lines = [json.loads(line) for line in store.read_text().splitlines()]
    for issue in lines:
        if issue["id"] == f"gt-{RIG}-polecat-nux":
            issue["updated_at"] = "2026-01-01T00:00:00Z"
    store.write_text("".join(json.dumps(i) + "\n" for i in lines))
    for _ in range(2):
        assert sweep(town, tmux_server).returncode == 0
    gupp = [s for s in mails(town, f"{RIG}/witness") if s.startswith("GUPP_VIOLATION")]
    assert len(gupp) == 1 and gupp[0].startswith(f"GUPP_VIOLATION: gt-{RIG}-polecat-nux stuck")


def test_parked_rig_is_not_swept(town: Path, tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")
    crash(tmux_server, tree, "nux")
    wisp = town / ".beads-wisp" / "config" / f"{RIG}.json"
    wisp.parent.mkdir(parents=True)
    wisp.write_text(json.dumps({"rig": RIG, "values": {"status": "parked"}, "blocked": []}))
    assert sweep(town, tmux_server).returncode == 0
    assert tmux_server.sessions() == set()


def test_probes_are_batched(town: Path, tmux_server: PrivateTmux) -> None:
    for name in ("a1", "b2", "c3"):
        polecat(town, tmux_server, name)
    calls = town / ".standin" / "calls.jsonl"
    before = len(calls.read_text().splitlines())
    assert sweep(town, tmux_server).returncode == 0
    made = [json.loads(line) for line in calls.read_text().splitlines()[before:]]
    # Per sweep: the rig database's agents in both list forms, then the rig beads; and
    # once before the oneshot exits, the work of every polecat (the cache of the next event).
    asked = [c["argv"] for c in made if c["tool"] == "bd"]
    assert [argv[0] for argv in asked] == ["list", "list", "show", "show"]
    assert len(asked[-1]) == 5  # the three polecats' work in one call (+ "show", "--json")
    before = len(calls.read_text().splitlines())
    assert sweep(town, tmux_server).returncode == 0
    made = [json.loads(line) for line in calls.read_text().splitlines()[before:]]
    assert [c for c in made if c["tool"] == "bd"] == []  # the stores did not change
