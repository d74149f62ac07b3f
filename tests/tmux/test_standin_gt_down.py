"""The stand-in ``gt down`` and ``gt up`` on a private tmux server, in both dialects: the
kill order and locks of ``gt down`` (gastown-2026.md §6.11), the sessions ``gt up``
starts (names, cwd, env: gastown.md §3.1-3.3, gastown-2026.md §3.1-3.3)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gastown_units.ports.locks import flock_holders, shutdown_in_progress
from tests.harness.poll import poll_until, wait_gone
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import STANDINS, agent_record

GT = STANDINS / "gt"

RECORDER = """
import signal, sys, time
log, name = sys.argv[1], sys.argv[2]
def note(what):
    with open(log, "a") as f:
        f.write(f"{what} {name}\\n")
signal.signal(signal.SIGINT, lambda *a: note("INT"))
def term(*a):
    note("TERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
signal.signal(signal.SIGHUP, term)
while True:
    time.sleep(0.1)
"""


@pytest.fixture(params=["J", "L"])
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def gt_town(town: Path, dialect: str) -> Path:
    (town / ".standin").mkdir(exist_ok=True)
    (town / ".standin" / "gt.dialect").write_text(dialect)
    (town / ".standin" / "gt.down-grace").write_text("0.5")
    (town / ".standin" / "gt.daemon-wait").write_text("10")
    (town / "gastown" / "crew" / "max").mkdir(parents=True, exist_ok=True)
    (town / "gastown" / "polecats" / "nux").mkdir(parents=True, exist_ok=True)
    return town


@pytest.fixture
def gt_env(tmux_server: PrivateTmux) -> dict[str, str]:
    env = {k: v for k, v in tmux_server.env().items()
           if not k.startswith(("GT_", "BD_", "BEADS_", "STANDIN_"))}
    env["GT_STANDIN_TMUX_SOCKET"] = tmux_server.socket  # [J]: this server, not the default
    env["GT_TMUX_SOCKET"] = tmux_server.socket  # [L]: `tmux -u -L <socket>`
    return env


@pytest.fixture
def no_daemon_left(gt_town: Path) -> Iterator[None]:
    """Whatever `gt daemon run` a test's `gt up` started is stopped at the end."""
    try:
        yield
    finally:
        for pid in flock_holders(gt_town / "daemon" / "daemon.lock", "WRITE"):
            os.kill(pid, signal.SIGTERM)
            wait_gone(pid)


def gt(town: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GT), *args], cwd=town, env=env,
                          capture_output=True, text=True, timeout=60)


def names(dialect: str) -> dict[str, str]:
    if dialect == "J":
        return {"polecat": "gt-gastown-nux", "crew": "gt-gastown-crew-max",
                "refinery": "gt-gastown-refinery", "witness": "gt-gastown-witness",
                "mayor": "hq-mayor", "boot": "gt-boot", "deacon": "hq-deacon"}
    return {"polecat": "gt-nux", "crew": "gt-crew-max", "refinery": "gt-refinery",
            "witness": "gt-witness", "mayor": "hq-mayor", "boot": "hq-boot",
            "deacon": "hq-deacon"}


def test_down_kills_in_order_under_its_locks_gastown_2026_6_11(
        gt_town: Path, gt_env: dict[str, str], tmux_server: PrivateTmux, dialect: str,
        tmp_path: Path) -> None:
    log = tmp_path / "kills.log"
    sessions = names(dialect)
    for name in sessions.values():
        tmux_server.tmux("new-session", "-d", "-s", name,
                         f"{sys.executable} -c '{RECORDER}' {log} {name}")
    poll_until(lambda: tmux_server.sessions() >= set(sessions.values()), timeout=10,
               what="sessions")
    down = subprocess.Popen([sys.executable, str(GT), "down", "--polecats"], cwd=gt_town,
                            env=gt_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        poll_until(lambda: shutdown_in_progress(gt_town / "daemon" / "shutdown.lock"),
                   timeout=10, what="gt down holding daemon/shutdown.lock")
        marker = gt_town / "daemon" / "shutting-down"
        if dialect == "L":  # its own PID, for its run (gastown-2026.md §1.2)
            poll_until(lambda: marker.exists() and marker.read_text() == str(down.pid),
                       timeout=10, what="daemon/shutting-down")
        out, err = down.communicate(timeout=60)
    finally:
        if down.poll() is None:
            down.kill()
            down.wait()
    assert down.returncode == 0, err
    assert not marker.exists()
    assert not shutdown_in_progress(gt_town / "daemon" / "shutdown.lock")
    terms = [line.split()[1] for line in log.read_text().splitlines()
             if line.startswith("TERM")]
    order = ["polecat", *(["crew"] if dialect == "L" else []), "refinery", "witness", "mayor",
             "boot", "deacon"]
    assert terms == [sessions[role] for role in order]
    ints = {line.split()[1] for line in log.read_text().splitlines() if line.startswith("INT")}
    assert ints == {sessions[role] for role in order}  # Ctrl-C first, then the kill
    killed = {sessions[role] for role in order}
    assert tmux_server.sessions() & killed == set()
    if dialect == "J":  # [J] gt down knows no crew
        assert sessions["crew"] in tmux_server.sessions()
    else:
        exit_empty = tmux_server.tmux("show-options", "-g", "-v", "exit-empty").stdout
        assert exit_empty.strip() == "off"


def test_up_starts_daemon_and_agents_then_down_stops_them_gastown_2026_6_11(
        gt_town: Path, gt_env: dict[str, str], tmux_server: PrivateTmux, dialect: str,
        no_daemon_left: None) -> None:
    up = gt(gt_town, gt_env, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "✓ Daemon: started" in up.stdout
    pid_text = (gt_town / "daemon" / "daemon.pid").read_text()
    daemon_pid = int(pid_text.split("\n")[0])
    assert flock_holders(gt_town / "daemon" / "daemon.lock", "WRITE") == [daemon_pid]
    sessions = names(dialect)
    want = {sessions[r] for r in ("deacon", "mayor", "witness", "refinery")}
    assert tmux_server.sessions() >= want
    witness = poll_until(lambda: agent_record(gt_town / "gastown" / "witness"), timeout=20,
                         what="witness agent record")
    env = witness["env"]
    assert env["GT_ROLE"] == ("witness" if dialect == "J" else "gastown/witness")
    assert (env["GT_RIG"], env["BD_ACTOR"], env["GT_ROOT"]) == (
        "gastown", "gastown/witness", str(gt_town))
    assert ("GT_SESSION" in env) == (dialect == "L")
    refinery = poll_until(lambda: agent_record(gt_town / "gastown" / "refinery" / "rig"),
                          timeout=20, what="refinery agent record")
    assert refinery["env"]["GT_REFINERY"] == "1"
    assert ("BEADS_NO_DAEMON" in refinery["env"]) == (dialect == "J")
    deacon = poll_until(lambda: agent_record(gt_town / "deacon"), timeout=20, what="deacon")
    assert deacon["env"]["GT_ROLE"] == "deacon"
    status = gt(gt_town, gt_env, "daemon", "status").stdout
    assert status.startswith(f"● Daemon is running (PID {daemon_pid})")
    again = gt(gt_town, gt_env, "up")  # idempotent: nothing started twice
    assert "✓ Daemon: running" in again.stdout and "started" not in again.stdout
    down = gt(gt_town, gt_env, "down")
    assert down.returncode == 0, down.stderr
    assert f"✓ Daemon stopped (was PID {daemon_pid})" in down.stdout
    wait_gone(daemon_pid)
    assert not (gt_town / "daemon" / "daemon.pid").exists()
    assert tmux_server.sessions() & want == set()
    state = json.loads((gt_town / "daemon" / "state.json").read_text())
    assert state["running"] is False
