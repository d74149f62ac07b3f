"""lifecycle-mail against real tmux and the stand-in gt, bd and agent.

Requests are seeded into the Deacon's inbox with ``gt standin seed-mail``; the service runs
as a real process (``--once`` or long-running), so exit codes, logs and signals are real.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import keeper
from tests.harness.gitrig import add_polecat, git, make_rig_repos
from tests.harness.poll import poll_until, wait_gone
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import AGENT, STANDINS, agent_record

RIG = "gastown"
WITNESS = f"gt-{RIG}-witness"
CYCLE = '{"action":"cycle"}'
SHELL_AGENT = ("--agent-command", "sh -c 'exec bash --norc --noprofile'")


def lifecycle(town: Path, server: PrivateTmux, *args: str) -> subprocess.CompletedProcess[str]:
    return keeper.run_once("lifecycle-mail", town, server.socket, *args)


def gt(town: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(STANDINS / "gt"), *args], cwd=town, capture_output=True,
                          text=True, timeout=30, check=True)


def seed(town: Path, sender: str, body: str, *, subject: str | None = None,
         age: float = 0, read: bool = False) -> str:
    """Mail a request to deacon/; returns its message ID."""
    subject = subject or f"LIFECYCLE: {sender} requesting something"
    return gt(town, "standin", "seed-mail", "--to", "deacon/", "--from", sender, "-s", subject,
              "-m", body, "--age-seconds", str(age), *(["--read"] if read else [])
              ).stdout.strip()


def inbox_ids(town: Path) -> set[str]:
    out = gt(town, "mail", "inbox", "--identity", "deacon/", "--json").stdout
    return {m["id"] for m in json.loads(out) or []}


def deacon_inbox_reads(town: Path) -> int:
    """How often the Deacon's inbox was read (the witness reads its own: not counted)."""
    calls = town / ".standin" / "calls.jsonl"
    lines = calls.read_text().splitlines() if calls.exists() else []
    return sum(1 for line in lines
               if json.loads(line)["argv"][:4] == ["mail", "inbox", "--identity", "deacon/"])


def starts(workdir: Path) -> int:
    path = workdir / ".agent" / "starts.log"
    return len(path.read_text().splitlines()) if path.exists() else 0


def start_witness(town: Path, server: PrivateTmux) -> int:
    """The rig's Witness, started by its own service; returns its pane PID."""
    result = keeper.run_once("witness", town, server.socket, "--rig", RIG)
    assert result.returncode == 0, result.stderr
    pid, command = server.pane(WITNESS)
    assert command == "claude"
    return pid


def start_by_hand(server: PrivateTmux, session: str, cwd: Path) -> int:
    cwd.mkdir(parents=True, exist_ok=True)
    server.tmux("new-session", "-d", "-s", session, "-c", str(cwd),
                f"exec {sys.executable} {AGENT}")
    return poll_until(lambda: (p := server.pane(session)) and p[1] == "claude" and p[0],
                      timeout=20, what=f"{session} running")


def park(town: Path) -> None:
    path = town / ".beads-wisp" / "config" / f"{RIG}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rig": RIG, "values": {"status": "parked"}, "blocked": []}))


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize(("sender", "body"), [
    (f"{RIG}/witness", CYCLE),  # the address form real mail carries
    (f"{RIG}-witness", "cycle"),  # the legacy form Gas Town's daemon parses
])
def test_cycle_restarts_the_witness_exactly_once(town: Path, tmux_server: PrivateTmux,
                                                 sender: str, body: str) -> None:
    old = start_witness(town, tmux_server)
    workdir = town / RIG / "witness"
    seed(town, sender, body)
    result = lifecycle(town, tmux_server)
    assert result.returncode == 0, result.stderr
    new, command = tmux_server.pane(WITNESS)
    assert new != old and command == "claude"
    wait_gone(old)
    assert inbox_ids(town) == set()
    poll_until(lambda: starts(workdir) == 2, timeout=10, what="the second start logged")
    record = poll_until(lambda: (r := agent_record(workdir)) and r["pid"] == new and r,
                        timeout=20, what="restarted witness record")
    assert (record["env"]["GT_ROLE"], record["env"]["BD_ACTOR"]) == ("witness", f"{RIG}/witness")
    style = tmux_server.tmux("show-options", "-t", f"={WITNESS}:", "-v", "status-left").stdout
    assert f"{RIG}/witness" in style
    again = lifecycle(town, tmux_server)
    assert again.returncode == 0, again.stderr
    assert tmux_server.pane(WITNESS)[0] == new and starts(workdir) == 2


def test_failed_start_keeps_the_request_claimed(town: Path, tmux_server: PrivateTmux) -> None:
    seed(town, f"{RIG}/witness", CYCLE)
    result = lifecycle(town, tmux_server, *SHELL_AGENT, "--start-timeout", "1")
    assert result.returncode == 1
    assert_clean(result)
    assert "not retried" in result.stderr
    assert inbox_ids(town) == set()
    assert WITNESS not in tmux_server.sessions()
    again = lifecycle(town, tmux_server, *SHELL_AGENT, "--start-timeout", "1")
    assert again.returncode == 0, again.stderr
    assert "started session" not in again.stderr
    assert WITNESS not in tmux_server.sessions()


def test_shutdown_stops_a_polecat(town: Path, tmux_server: PrivateTmux) -> None:
    pid = start_by_hand(tmux_server, f"gt-{RIG}-nux", town / RIG / "polecats" / "nux")
    seed(town, f"{RIG}/nux", '{"action":"shutdown"}')
    result = lifecycle(town, tmux_server)
    assert result.returncode == 0, result.stderr
    assert f"gt-{RIG}-nux" not in tmux_server.sessions()
    wait_gone(pid)
    assert inbox_ids(town) == set()


def test_cycle_of_a_polecat_pre_syncs_its_worktree(town: Path,
                                                   tmux_server: PrivateTmux) -> None:
    clone = make_rig_repos(town / RIG)
    tree = add_polecat(town / RIG, RIG, "nux")
    (clone / "NEWS").write_text("landed on main after the polecat branched\n")
    git(clone, "add", "NEWS")
    git(clone, "commit", "-q", "-m", "news")
    git(clone, "push", "-q", "origin", "main")
    old = start_by_hand(tmux_server, f"gt-{RIG}-nux", tree)
    seed(town, f"{RIG}-polecat-nux", "Action: Restart")
    result = lifecycle(town, tmux_server)
    assert result.returncode == 0, result.stderr
    new, _ = tmux_server.pane(f"gt-{RIG}-nux")
    assert new != old
    record = poll_until(lambda: (r := agent_record(tree)) and r["pid"] == new and r,
                        timeout=20, what="restarted polecat record")
    assert record["env"]["GT_POLECAT"] == "nux"
    assert f"{RIG}/polecats/nux <- daemon • " in record["argv"][-1]
    assert record["argv"][-1].endswith("lifecycle-restart\n\nCheck your hook and begin work.")
    assert (tree / "NEWS").exists()  # git pull --rebase origin main before the start
    # The same start profile as polecat-health's restart: the pane-died hook too.
    hooks = tmux_server.tmux("show-hooks", "-w", "-t", f"=gt-{RIG}-nux:").stdout
    assert "gt log crash --agent 'gastown/nux'" in hooks


@pytest.mark.parametrize(("sender", "session", "workdir", "role"), [
    ("deacon/", "hq-deacon", "deacon", "deacon"),
    ("mayor/", "hq-mayor", ".", "mayor"),
    ("deacon/dogs/boot", "gt-boot", "deacon/dogs/boot", "boot"),
    (f"{RIG}/refinery", f"gt-{RIG}-refinery", f"{RIG}/refinery/rig", "refinery"),
])
def test_every_role_can_be_cycled(town: Path, tmux_server: PrivateTmux, sender: str,
                                   session: str, workdir: str, role: str) -> None:
    seed(town, sender, CYCLE)
    result = lifecycle(town, tmux_server)
    assert result.returncode == 0, result.stderr
    assert session in tmux_server.sessions()
    record = poll_until(lambda: agent_record(town / workdir), timeout=20,
                        what=f"{role} agent record")
    assert record["env"]["GT_ROLE"] == role
    assert inbox_ids(town) == set()


def test_expired_request_is_deleted_and_not_acted_on(town: Path,
                                                     tmux_server: PrivateTmux) -> None:
    pid = start_witness(town, tmux_server)
    seed(town, f"{RIG}/witness", CYCLE, age=7 * 3600)
    result = lifecycle(town, tmux_server)
    assert result.returncode == 0, result.stderr
    assert "expired" in result.stderr
    assert inbox_ids(town) == set()
    assert tmux_server.pane(WITNESS)[0] == pid and starts(town / RIG / "witness") == 1


def test_request_older_than_its_session_is_stale(town: Path, tmux_server: PrivateTmux) -> None:
    seed(town, f"{RIG}/witness", CYCLE, age=120)
    pid = start_witness(town, tmux_server)
    result = lifecycle(town, tmux_server)
    assert result.returncode == 0, result.stderr
    assert "stale" in result.stderr
    assert inbox_ids(town) == set()
    assert tmux_server.pane(WITNESS)[0] == pid and starts(town / RIG / "witness") == 1


def test_unreadable_requests_are_left_alone(town: Path, tmux_server: PrivateTmux) -> None:
    pid = start_witness(town, tmux_server)
    ids = {seed(town, f"{RIG}/witness", '{"action": '),
           seed(town, f"{RIG}/witness", '{"action":"dance"}'),
           seed(town, "overseer", CYCLE),
           seed(town, "otherrig/witness", CYCLE),
           seed(town, f"{RIG}/witness", "cycle", subject="please cycle")}
    seen = seed(town, f"{RIG}/witness", "dance", read=True)
    result = lifecycle(town, tmux_server)
    assert result.returncode == 0, result.stderr
    assert_clean(result)
    assert inbox_ids(town) == ids | {seen}
    assert tmux_server.pane(WITNESS)[0] == pid
    assert "malformed JSON" in result.stderr and "unknown action 'dance'" in result.stderr
    assert "unknown agent identity 'overseer'" in result.stderr
    assert "rig 'otherrig' is not in" in result.stderr
    assert "please cycle" not in result.stderr  # not ours: silently left
    assert seen not in result.stderr  # already read: skipped, not even parsed


def test_warnings_about_a_message_are_given_once(town: Path, tmux_server: PrivateTmux) -> None:
    seed(town, f"{RIG}/witness", '{"action":"dance"}')
    proc = keeper.start("lifecycle-mail", town, tmux_server.socket, "--lifecycle-interval", "0.2",
                        env={"GT_FACT_MAX_AGE": "0"})  # each pass reads: the reads count them
    try:
        poll_until(lambda: deacon_inbox_reads(town) >= 4, timeout=30, what="four passes")
    finally:
        code, out = keeper.stop(proc)
    assert code == 0, out
    assert out.count("unknown action 'dance'") == 1, out


def test_sigusr1_runs_a_pass_at_once(town: Path, tmux_server: PrivateTmux) -> None:
    pid = start_witness(town, tmux_server)
    proc = keeper.start("lifecycle-mail", town, tmux_server.socket, "--lifecycle-interval", "3600")
    try:
        poll_until(lambda: deacon_inbox_reads(town) >= 1, timeout=30, what="the first pass")
        seed(town, f"{RIG}/witness", CYCLE)
        proc.send_signal(signal.SIGUSR1)
        poll_until(lambda: (p := tmux_server.pane(WITNESS)) and p[0] != pid, timeout=30,
                   what="the witness restarted after SIGUSR1")
    finally:
        code, out = keeper.stop(proc)
    assert code == 0, out
    assert inbox_ids(town) == set()


def test_strict_mode_needs_the_agents_own_flag(town: Path, tmux_server: PrivateTmux) -> None:
    pid = start_witness(town, tmux_server)
    strict = ("--lifecycle-strict", "true")
    mid = seed(town, f"{RIG}/witness", CYCLE)
    result = lifecycle(town, tmux_server, *strict)
    assert result.returncode == 0, result.stderr
    assert "strict mode" in result.stderr
    assert inbox_ids(town) == {mid} and tmux_server.pane(WITNESS)[0] == pid

    state = town / RIG / "witness" / "state.json"
    state.write_text(json.dumps({"role": "witness", "requesting_cycle": True,
                                 "requesting_time": "2026-01-25T18:00:00Z"}))
    result = lifecycle(town, tmux_server, *strict)
    assert result.returncode == 0, result.stderr
    assert inbox_ids(town) == set() and tmux_server.pane(WITNESS)[0] != pid
    assert json.loads(state.read_text()) == {"role": "witness"}
    assert state.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("knob", ["gt.fail", "gt.hang"])
def test_failing_gt_means_nothing_is_done(town: Path, tmux_server: PrivateTmux,
                                          knob: str) -> None:
    pid = start_witness(town, tmux_server)
    mid = seed(town, f"{RIG}/witness", CYCLE)
    fault = town / ".standin" / knob
    fault.parent.mkdir(exist_ok=True)
    fault.write_text("database is locked")
    try:
        result = lifecycle(town, tmux_server, "--gt-timeout", "2")
    finally:
        fault.unlink()
    assert result.returncode == 1
    assert_clean(result)
    assert "cannot read the deacon/ inbox" in result.stderr
    assert tmux_server.pane(WITNESS)[0] == pid
    assert inbox_ids(town) == {mid}


def test_failing_claim_means_no_action(town: Path, tmux_server: PrivateTmux,
                                      tmp_path: Path) -> None:
    pid = start_witness(town, tmux_server)
    mid = seed(town, f"{RIG}/witness", CYCLE)
    wrapper = tmp_path / "gt-delete-fails"  # the stand-in has no per-subcommand knob
    wrapper.write_text("#!/bin/sh\n"
                       'if [ "$1" = mail ] && [ "$2" = delete ]; then\n'
                       '  echo "Error: database is locked" >&2; exit 1\nfi\n'
                       f'exec {STANDINS / "gt"} "$@"\n')
    wrapper.chmod(0o755)
    result = lifecycle(town, tmux_server, "--gt-bin", str(wrapper))
    assert result.returncode == 1
    assert_clean(result)
    assert "cannot claim" in result.stderr and "not acting" in result.stderr
    assert tmux_server.pane(WITNESS)[0] == pid and starts(town / RIG / "witness") == 1
    assert inbox_ids(town) == {mid}
    result = lifecycle(town, tmux_server)  # the claim works again: done now
    assert result.returncode == 0, result.stderr
    assert tmux_server.pane(WITNESS)[0] != pid and inbox_ids(town) == set()


def test_parked_rig_keeps_its_agent_and_loses_the_request(town: Path,
                                                          tmux_server: PrivateTmux) -> None:
    pid = start_witness(town, tmux_server)
    park(town)
    seed(town, f"{RIG}/witness", CYCLE)
    result = lifecycle(town, tmux_server)
    assert result.returncode == 0, result.stderr
    assert "not operational (rig is parked)" in result.stderr
    assert inbox_ids(town) == set()
    assert tmux_server.pane(WITNESS)[0] == pid and starts(town / RIG / "witness") == 1


def test_parked_rig_still_honours_shutdown(town: Path, tmux_server: PrivateTmux) -> None:
    pid = start_witness(town, tmux_server)
    park(town)
    seed(town, f"{RIG}/witness", "shutdown")
    assert lifecycle(town, tmux_server).returncode == 0
    assert WITNESS not in tmux_server.sessions()
    wait_gone(pid)
