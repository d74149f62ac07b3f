"""witness@<rig> and refinery@<rig> against real tmux, real git and the stand-ins."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import keeper
from tests.harness.gitrig import add_polecat, age_worktree, branches, git, make_rig_repos
from tests.harness.poll import poll_until, wait_gone
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import AGENT, STANDINS, agent_record, bd

RIG = "gastown"


def witness(town: Path, server: PrivateTmux, *args: str,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return keeper.run_once("witness", town, server.socket, "--rig", RIG, *args, env=env)


def refinery(town: Path, server: PrivateTmux, *args: str) -> subprocess.CompletedProcess[str]:
    return keeper.run_once("refinery", town, server.socket, "--rig", RIG, *args)


def standin(town: Path, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(STANDINS / tool), *args], cwd=town, capture_output=True,
                          text=True, timeout=30, check=True)


def inbox(town: Path, identity: str) -> list[dict]:
    out = standin(town, "gt", "mail", "inbox", "--identity", identity, "--json").stdout
    return json.loads(out) or []


def start_polecat(server: PrivateTmux, tree: Path, name: str) -> int:
    server.tmux("new-session", "-d", "-s", f"gt-{RIG}-{name}", "-c", str(tree),
                f"exec {sys.executable} {AGENT} polecat")
    return poll_until(lambda: (p := server.pane(f"gt-{RIG}-{name}")) and p[1] == "claude"
                      and p[0], timeout=20, what=f"polecat {name} running")


def test_refinery_starts_with_its_environment_and_startup_nudge(
        town: Path, tmux_server: PrivateTmux) -> None:
    result = refinery(town, tmux_server)
    assert result.returncode == 0, result.stderr
    workdir = town / RIG / "refinery" / "rig"
    record = poll_until(lambda: agent_record(workdir), timeout=20, what="refinery agent")
    env = record["env"]
    assert (env["GT_ROLE"], env["GT_RIG"], env["BD_ACTOR"]) == ("refinery", RIG,
                                                               f"{RIG}/refinery")
    assert (env["BEADS_NO_DAEMON"], env["GT_REFINERY"]) == ("1", "1")
    assert record["argv"][-1].endswith("Check your hook and begin patrol.")
    log = workdir / ".agent" / "input.log"
    poll_until(lambda: log.exists() and "gt prime && gt mail check --inject" in log.read_text(),
               timeout=20, what="startup fallback nudge")


def test_a_non_claude_refinery_is_not_killed_for_want_of_claudes_prompt(
        town: Path, tmux_server: PrivateTmux) -> None:
    """Contract §3.5: only a runtime with a known prompt is waited for by its prompt; codex
    (no prompt, ready delay 3 s) used to be killed after every start for not showing ``❯``."""
    (town / RIG / "settings").mkdir(exist_ok=True)
    (town / RIG / "settings" / "config.json").write_text(json.dumps({
        "role_agents": {"refinery": "codex"},
        "agents": {"codex": {"command": "/usr/bin/env",  # its own prompt, not Claude's
                             "args": ["STANDIN_AGENT_PROMPT=codex> ", sys.executable,
                                      str(AGENT)], "prompt_mode": "none"}}}))
    result = refinery(town, tmux_server, "--agent-command", "", "--start-timeout", "4")
    assert result.returncode == 0, result.stderr
    assert "no ready prompt" not in result.stderr
    workdir = town / RIG / "refinery" / "rig"
    record = poll_until(lambda: agent_record(workdir), timeout=20, what="refinery agent")
    assert tmux_server.pane(f"gt-{RIG}-refinery")[0] == record["pid"]
    log = workdir / ".agent" / "input.log"  # typed after the ready delay: no hooks in codex
    poll_until(lambda: log.exists() and "gt prime && gt mail check --inject" in log.read_text(),
               timeout=20, what="startup fallback nudge")
    again = refinery(town, tmux_server, "--agent-command", "")
    assert again.returncode == 0 and tmux_server.pane(f"gt-{RIG}-refinery")[0] == record["pid"]


def test_refinery_falls_back_to_the_mayors_clone(town: Path, tmux_server: PrivateTmux) -> None:
    (town / RIG / "refinery" / "rig").rmdir()
    assert refinery(town, tmux_server).returncode == 0
    record = poll_until(lambda: agent_record(town / RIG / "mayor" / "rig"), timeout=20,
                        what="refinery agent in mayor/rig")
    assert record["env"]["GT_ROLE"] == "refinery"


def test_refinery_without_any_worktree_fails_clearly(town: Path,
                                                     tmux_server: PrivateTmux) -> None:
    (town / RIG / "refinery" / "rig").rmdir()
    shutil.rmtree(town / RIG / "mayor" / "rig")
    result = refinery(town, tmux_server)
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert tmux_server.sessions() == set()


def test_witness_starts_with_role_env_and_rig_theme(town: Path,
                                                   tmux_server: PrivateTmux) -> None:
    result = witness(town, tmux_server)
    assert result.returncode == 0, result.stderr
    assert "not operational" not in result.stderr
    record = poll_until(lambda: agent_record(town / RIG / "witness"), timeout=20,
                        what="witness agent")
    env = record["env"]
    assert (env["GT_ROLE"], env["GT_RIG"], env["BD_ACTOR"], env["GIT_AUTHOR_NAME"]) == (
        "witness", RIG, f"{RIG}/witness", f"{RIG}/witness")
    assert "I am Witness for gastown." in record["argv"][-1]
    left = tmux_server.tmux("show-options", "-t", f"=gt-{RIG}-witness:", "-v",
                            "status-left").stdout
    assert f"🦉 {RIG}/witness" in left


def test_zombie_witness_is_replaced(town: Path, tmux_server: PrivateTmux) -> None:
    tmux_server.tmux("new-session", "-d", "-s", f"gt-{RIG}-witness", "exec sh")
    shell, _ = poll_until(lambda: tmux_server.pane(f"gt-{RIG}-witness"), timeout=10,
                          what="zombie")
    assert witness(town, tmux_server).returncode == 0
    pid, command = tmux_server.pane(f"gt-{RIG}-witness")
    assert pid != shell and command == "claude"
    wait_gone(shell)


@pytest.mark.parametrize("wisp", [
    {"rig": RIG, "values": {"status": "parked"}, "blocked": []},
    {"rig": RIG, "values": {"status": "docked"}, "blocked": []},
    {"rig": RIG, "values": {"auto_restart": False}, "blocked": []},
    {"rig": RIG, "values": {}, "blocked": ["auto_restart"]},
])
def test_not_operational_rig_gets_no_starts(town: Path, tmux_server: PrivateTmux,
                                            wisp: dict) -> None:
    path = town / ".beads-wisp" / "config" / f"{RIG}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(wisp))
    for run in (witness, refinery):
        result = run(town, tmux_server)
        assert result.returncode == 0, result.stderr
        assert "not operational" in result.stderr
    assert tmux_server.sessions() == set()


def test_docked_label_and_failing_bd_mean_no_starts_and_no_kills(
        town: Path, tmux_server: PrivateTmux) -> None:
    # The rig bead lives in the rig's database (beads.md §7.6): bd routes the show there.
    bd(town, "create", "--id=gt-rig-gastown", "--title=gastown", "--type=task",
       "--labels=status:docked", "--force", rig=RIG)
    result = witness(town, tmux_server)
    assert "rig is docked" in result.stderr and tmux_server.sessions() == set()
    bd(town, "update", "gt-rig-gastown", "--status=closed")
    bd(town, "label", "remove", "gt-rig-gastown", "status:docked", rig=RIG)
    (town / ".standin").mkdir(exist_ok=True)
    (town / ".standin" / "bd.fail").write_text("database is locked")
    try:
        result = witness(town, tmux_server)
        assert "bd failed" in result.stderr and tmux_server.sessions() == set()
        # A running witness is never killed because bd fails.
        (town / ".standin" / "bd.fail").unlink()
        assert witness(town, tmux_server).returncode == 0
        pid, _ = tmux_server.pane(f"gt-{RIG}-witness")
        (town / ".standin" / "bd.fail").write_text("database is locked")
        witness(town, tmux_server)
        assert tmux_server.pane(f"gt-{RIG}-witness")[0] == pid
    finally:
        (town / ".standin" / "bd.fail").unlink(missing_ok=True)


def test_stuck_ladder_nudge_escalate_wait_and_reset(town: Path,
                                                    tmux_server: PrivateTmux) -> None:
    make_rig_repos(town / RIG)
    tree = add_polecat(town / RIG, RIG, "nux")
    start_polecat(tmux_server, tree, "nux")
    fast = ("--stuck-threshold", "60", "--ladder-interval", "0")
    stale = time.time() - 2 * 3600
    age_worktree(tree, stale)
    inputs = tree / ".agent" / "input.log"

    first = witness(town, tmux_server, *fast)  # 1: nudge
    assert "nudged (1/3)" in first.stderr, first.stderr
    poll_until(lambda: inputs.exists() and "NUDGE: No activity detected" in inputs.read_text(),
               timeout=20, what="nudge typed into the polecat")
    assert inbox(town, "mayor/") == []
    age_worktree(tree, stale)  # the agent's own files are not git activity

    second = witness(town, tmux_server, *fast)  # 2: escalate
    assert "escalated to mayor/ (2/3)" in second.stderr, second.stderr
    mails = inbox(town, "mayor/")
    assert [m["subject"] for m in mails] == ["ESCALATION: Polecat nux stuck"]
    assert mails[0]["from"] == f"{RIG}/witness"

    third = witness(town, tmux_server, *fast)  # 3: wait for a human
    assert "waiting for a human (3/3)" in third.stderr
    fourth = witness(town, tmux_server, *fast)  # nothing more
    assert "(1/3)" not in fourth.stderr and "(2/3)" not in fourth.stderr
    assert len(inbox(town, "mayor/")) == 1

    git(tree, "commit", "-q", "--allow-empty", "-m", "progress")  # activity
    fifth = witness(town, tmux_server, *fast)
    assert "ladder reset" in fifth.stderr
    state = json.loads((town / "daemon" / "units" / f"witness-{RIG}.json").read_text())
    assert state["ladder"] == {}
    age_worktree(tree, time.time() - 3600)
    assert "nudged (1/3)" in witness(town, tmux_server, *fast).stderr


def _request_shutdown(town: Path, name: str, subject: str | None = None) -> None:
    standin(town, "gt", "standin", "seed-mail", "--to", f"{RIG}/witness",
            "--from", f"{RIG}/{name}", "-s", subject or f"LIFECYCLE:Shutdown {name}",
            "-m", f"Reason: work_reassigned\nRequestedBy: mayor\nPolecat: {name}")


def test_shutdown_request_cleans_up_the_polecat(town: Path, tmux_server: PrivateTmux) -> None:
    clone = make_rig_repos(town / RIG)
    tree = add_polecat(town / RIG, RIG, "nux")
    pid = start_polecat(tmux_server, tree, "nux")
    _request_shutdown(town, "nux", "LIFECYCLE: polecat-nux requesting shutdown")
    result = witness(town, tmux_server)
    assert result.returncode == 0, result.stderr
    assert f"gt-{RIG}-nux" not in tmux_server.sessions()
    wait_gone(pid)
    assert not tree.exists() and not (town / RIG / "polecats" / "nux").exists()
    # The branch went in the repository the worktree belonged to (.repo.git, §1.4).
    assert "polecat/nux" not in branches(town / RIG / ".repo.git")
    assert "nux" not in git(town / RIG / ".repo.git", "worktree", "list")
    assert branches(clone) == {"main"}
    assert inbox(town, f"{RIG}/witness") == []
    # Done is done: another pass changes nothing and fails nothing.
    assert witness(town, tmux_server).returncode == 0


def test_dirty_worktree_is_not_removed(town: Path, tmux_server: PrivateTmux) -> None:
    make_rig_repos(town / RIG)
    tree = add_polecat(town / RIG, RIG, "nux")
    pid = start_polecat(tmux_server, tree, "nux")
    (tree / "half-done.py").write_text("print('wip')\n")
    _request_shutdown(town, "nux")
    for _ in range(2):
        result = witness(town, tmux_server)
        assert result.returncode == 0, result.stderr
    assert tree.exists() and (tree / "half-done.py").exists()
    assert tmux_server.pane(f"gt-{RIG}-nux")[0] == pid
    assert "polecat/nux" in branches(town / RIG / ".repo.git")
    told = inbox(town, f"{RIG}/nux")
    assert len(told) == 1 and told[0]["subject"].startswith("NUDGE: Cannot shutdown - ")
    assert "half-done.py" in told[0]["subject"]
    assert len(inbox(town, f"{RIG}/witness")) == 1  # retried next pass


def test_unmerged_branch_is_kept_and_gone_polecat_acknowledged(
        town: Path, tmux_server: PrivateTmux) -> None:
    make_rig_repos(town / RIG)
    tree = add_polecat(town / RIG, RIG, "nux")
    (tree / "feature.py").write_text("x = 1\n")
    git(tree, "add", "feature.py")
    git(tree, "commit", "-q", "-m", "feature")
    _request_shutdown(town, "nux")
    _request_shutdown(town, "ghost")  # already gone: just acknowledged
    result = witness(town, tmux_server)
    assert result.returncode == 0, result.stderr
    assert not tree.exists()
    assert "polecat/nux" in branches(town / RIG / ".repo.git")
    assert "not fully merged" in result.stderr
    assert inbox(town, f"{RIG}/witness") == []


SPAWN = ("--auto-spawn", "true", "--spawn-delay", "0")


def slings(town: Path) -> list[dict]:
    path = town / ".standin" / "slings.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def quick_slings(town: Path, seconds: float = 0.3) -> None:
    (town / ".standin").mkdir(exist_ok=True)
    (town / ".standin" / "gt.sling-seconds").write_text(f"{seconds}\n")


def test_auto_spawn_slings_ready_work_of_the_rig_database_once(
        town: Path, tmux_server: PrivateTmux) -> None:
    """The MVP read ``bd ready`` in the rig's database (gastown.md §6.7): rig work lives
    there, not in the town's (beads.md §7.6)."""
    quick_slings(town)
    for title, kind in (("fix it", "task"), ("big plan", "epic"), ("merge", "merge-request"),
                        ("fix more", "bug")):
        bd(town, "create", f"--title={title}", f"--type={kind}", rig=RIG)
    bd(town, "create", "--title=town chore", "--type=task")  # town work: not this rig's
    args = (*SPAWN, "--max-workers", "4")
    assert witness(town, tmux_server, *args).returncode == 0
    done = slings(town)
    assert len(done) == 2 and all(s["rig"] == RIG and s["bead"].startswith("gt-")
                                  for s in done)
    assert witness(town, tmux_server, *args).returncode == 0
    assert len(slings(town)) == 2


def test_auto_spawn_respects_capacity(town: Path, tmux_server: PrivateTmux) -> None:
    quick_slings(town)
    make_rig_repos(town / RIG)
    start_polecat(tmux_server, add_polecat(town / RIG, RIG, "nux"), "nux")
    for n in range(3):
        bd(town, "create", f"--title=task {n}", "--type=task", rig=RIG)
    assert witness(town, tmux_server, *SPAWN, "--max-workers", "2").returncode == 0
    assert len(slings(town)) == 1


def test_auto_spawn_sees_past_the_ready_limit_and_retries_failed_slings(
        town: Path, tmux_server: PrivateTmux) -> None:
    """Ten failing issues used to fill ``bd ready``'s default 10 (beads.md §5.1) and were
    never retried: the rig starved. Now: untruncated, failures backed off, then retried."""
    quick_slings(town)
    bad = [json.loads(bd(town, "create", f"--title=broken {n}", "--type=task", "-p", "0",
                         "--json", rig=RIG))["id"] for n in range(10)]
    good = [json.loads(bd(town, "create", f"--title=fine {n}", "--type=task", "-p", "3",
                          "--json", rig=RIG))["id"] for n in range(2)]
    (town / ".standin" / "gt.sling-fail").write_text("\n".join(bad) + "\n")
    args = (*SPAWN, "--max-workers", "4", "--sling-backoff", "1h")
    first = witness(town, tmux_server, *args)
    assert first.returncode == 1  # the failed slings are this pass's failures
    assert "auto-spawn of" in first.stderr and "retried in" in first.stderr
    assert "Traceback" not in first.stderr
    assert sorted(s["bead"] for s in slings(town)) == sorted(good)
    tries = [c for c in calls(town, "gt") if c["argv"][:1] == ["sling"]]
    assert len(tries) == 12
    again = witness(town, tmux_server, *args)  # inside the backoff: nobody is tried
    assert again.returncode == 0, again.stderr
    assert len([c for c in calls(town, "gt") if c["argv"][:1] == ["sling"]]) == 12
    (town / ".standin" / "gt.sling-fail").unlink()
    retried = witness(town, tmux_server, *SPAWN, "--max-workers", "4", "--sling-backoff", "0")
    assert retried.returncode == 0, retried.stderr
    assert len(slings(town)) == 6  # 4 more: slung polecats have no session here


def test_a_slow_sling_is_not_cut_off_and_a_hung_one_is(town: Path,
                                                       tmux_server: PrivateTmux) -> None:
    """A real polecat start waits for the runtime, its ready delay and 2 s more: longer
    than ``gt``'s 15 s timeout. The sling has its own, longer one, and a hung sling is
    killed at it and retried later."""
    quick_slings(town, 3.0)
    issue = json.loads(bd(town, "create", "--title=slow", "--type=task", "--json",
                          rig=RIG))["id"]
    ok = witness(town, tmux_server, *SPAWN, "--gt-timeout", "1")
    assert ok.returncode == 0, ok.stderr
    assert [s["bead"] for s in slings(town)] == [issue]
    other = json.loads(bd(town, "create", "--title=hung", "--type=task", "--json",
                          rig=RIG))["id"]
    quick_slings(town, 600)
    hung = witness(town, tmux_server, *SPAWN, "--sling-timeout", "2")
    assert hung.returncode == 1 and "no answer within 2s" in hung.stderr
    assert "Traceback" not in hung.stderr
    sling_pids = [c["pid"] for c in calls(town, "gt") if c["argv"][:2] == ["sling", other]]
    assert sling_pids and all(not pid_alive(p) for p in sling_pids)


def calls(town: Path, tool: str) -> list[dict]:
    path = town / ".standin" / "calls.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r for r in rows if r["tool"] == tool]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_unknown_rig_is_a_config_error(town: Path, tmux_server: PrivateTmux) -> None:
    result = keeper.run_once("witness", town, tmux_server.socket, "--rig", "nosuchrig")
    assert result.returncode == 78
    assert "not in" in result.stderr and "Traceback" not in result.stderr
