"""The polecat sweep as its unit starts it (issue 12: the event path), and the race it
no longer guards with ``has-session``: a session started by somebody else while the sweep
pre-syncs the worktree (gastown.md §6.5 step 3) is left alone, not doubled or failed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import keeper
from tests.harness.poll import poll_until
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import AGENT, STANDINS, agent_record
from tests.tmux.test_polecat_health import RIG, crash, polecat

pytestmark = pytest.mark.tmux


def unit_env(town: Path, server: PrivateTmux, **extra: str) -> dict[str, str]:
    """The settings as the unit gets them: from the environment (its EnvironmentFile=),
    none on the command line."""
    return keeper.service_env({
        "GT_TOWN_ROOT": str(town), "GT_TMUX_SOCKET": server.socket,
        "GT_AGENT_COMMAND": f"{sys.executable} {AGENT}", "GT_KILL_GRACE": "1",
        "GT_BD_BIN": str(STANDINS / "bd"), "GT_GT_BIN": str(STANDINS / "gt"),
        "GT_RESTART_BACKOFF": "0", **extra})


UNIT_ARGV = [sys.executable, "-m", "gastown_units", "run", "polecat-health", "--once"]


def test_the_units_command_line_restarts_a_crashed_polecat(town: Path,
                                                           tmux_server: PrivateTmux) -> None:
    """``run polecat-health --once`` (the fast start, no click) does what the full command
    line does."""
    tree = polecat(town, tmux_server, "nux")
    first = agent_record(tree)["pid"]
    crash(tmux_server, tree, "nux")
    result = subprocess.run(UNIT_ARGV, env=unit_env(town, tmux_server), capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "CRASH DETECTED: polecat gastown/nux has hook_bead=" in result.stderr
    poll_until(lambda: (r := agent_record(tree)) and r["pid"] != first, timeout=30,
               what="restarted polecat agent")


def test_the_units_command_line_reports_a_bad_setting_in_one_line(town: Path) -> None:
    env = keeper.service_env({"GT_TOWN_ROOT": str(town), "GT_RESTART_BACKOFF": "soon"})
    result = subprocess.run(UNIT_ARGV, env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 78
    assert "GT_RESTART_BACKOFF" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def _slow_upload_pack(tree: Path, flag: Path, go: Path) -> None:
    """The first fetch of the worktree's origin waits for ``go`` (after creating ``flag``):
    the pre-sync is slow, as against a remote far away."""
    script = tree.parent / "slow-upload-pack"
    script.write_text("#!/bin/sh\n"
                      f'if [ ! -e "{flag}" ]; then : > "{flag}"; i=0\n'
                      f'  while [ ! -e "{go}" ] && [ $i -lt 600 ]; do sleep 0.05; '
                      "i=$((i+1)); done\nfi\nexec git upload-pack \"$@\"\n")
    script.chmod(0o755)
    subprocess.run(["git", "-C", str(tree), "config", "remote.origin.uploadpack",
                    str(script)], check=True)


def test_a_polecat_started_by_another_during_the_pre_sync_is_left_alone(
        town: Path, tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")
    crash(tmux_server, tree, "nux")
    flag, go = tree.parent / "fetching", tree.parent / "go"
    _slow_upload_pack(tree, flag, go)
    sweep = subprocess.Popen(UNIT_ARGV, env=unit_env(town, tmux_server), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        poll_until(flag.exists, timeout=60, what="the sweep's pre-sync fetch")
        # Somebody else (gt, an operator) starts the polecat while the sweep pre-syncs.
        session = f"gt-{RIG}-nux"
        tmux_server.tmux("new-session", "-d", "-s", session, "-c", str(tree),
                         f"exec {sys.executable} {AGENT}")
        theirs = poll_until(lambda: (p := tmux_server.pane(session)) and p[1] == "claude"
                            and p, timeout=20, what="the other start's agent")
        go.touch()
        out, _ = sweep.communicate(timeout=120)
    finally:
        go.touch()
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    assert sweep.returncode == 0, out
    assert f"{session} came back while we looked: not restarted" in out
    assert "failed" not in out.lower(), out
    assert tmux_server.pane(session) == theirs  # the same pane and process, untouched
    assert [s for s in tmux_server.sessions() if s == session] == [session]


def test_new_session_on_a_taken_name_is_told_apart(tmux_server: PrivateTmux,
                                                   tmp_path: Path) -> None:
    from gastown_units.errors import ToolError
    from gastown_units.ports.tmux import SessionExists, Tmux

    tmux = Tmux(socket=tmux_server.socket)
    tmux.new_session("gt-x", cwd=tmp_path, command="sleep 60")
    with pytest.raises(SessionExists, match="duplicate session"):
        tmux.new_session("gt-x", cwd=tmp_path, command="sleep 60")
    with pytest.raises(SessionExists):
        tmux.new_session_env("gt-x", cwd=tmp_path, env={"A": "1"})
    with pytest.raises(ToolError) as other:  # no server there: another failure
        Tmux(socket=f"{tmux_server.socket}-none").new_session("gt-x", cwd=tmp_path,
                                                              command="sleep 60")
    assert not isinstance(other.value, SessionExists)
