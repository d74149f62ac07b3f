"""``gastown-units status`` tells the truth (issue 10, 4): state by the keepers' rule, PID,
uptime, restarts, backoff, held; exit 0 only when everything expected runs; as root on the
owner's tmux server; read-only (a damaged state file is reported, never set aside)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import keeper
from tests.harness.poll import poll_until
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import AGENT, make_town

RIG = "gastown"
AGENTS = ("deacon-keeper", "witness", "refinery")


def status(town: Path, socket: str, *args: str, command: str = f"{sys.executable} {AGENT}"
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gastown_units", "status", "--town", str(town), *args],
        capture_output=True, text=True, timeout=60,
        env=keeper.service_env({"GT_TMUX_SOCKET": socket, "GT_AGENT_COMMAND": command}))


@pytest.fixture
def running(town: Path, tmux_server: PrivateTmux) -> Path:
    for service in AGENTS:
        args = ("--rig", RIG) if service != "deacon-keeper" else ()
        result = keeper.run_once(service, town, tmux_server.socket, *args)
        assert result.returncode == 0, result.stderr
    poll_until(lambda: {"hq-deacon", f"gt-{RIG}-witness", f"gt-{RIG}-refinery"}
               <= tmux_server.sessions(), timeout=30, what="agents")
    return town


def test_everything_running_is_ok_and_json_says_why(running: Path,
                                                    tmux_server: PrivateTmux) -> None:
    state = running / "daemon" / "restart_state.json"
    state.write_text(json.dumps({"agents": {
        f"gt-{RIG}-witness": {"restart_count": 3, "last_restart": "2026-01-25T18:00:00Z",
                              "backoff_until": "2099-01-01T00:00:00Z",
                              "crash_loop_since": "0001-01-01T00:00:00Z"},
        f"gt-{RIG}-max": {"restart_count": 1, "backoff_until": "2099-01-01T00:00:00Z"}}}))
    for name in ("nux", "max"):
        (running / RIG / "polecats" / name).mkdir()
    text = status(running, tmux_server.socket)
    assert text.returncode == 0, text.stdout + text.stderr
    assert text.stdout.splitlines()[-1] == "OK: everything expected runs"
    result = status(running, tmux_server.socket, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = {r["address"]: r for r in report["agents"]}
    assert report["ok"] is True and report["problems"] == []
    assert rows["deacon/"]["state"] == "running" and rows["deacon/"]["expected"]
    assert rows["deacon/"]["pid"] == tmux_server.pane("hq-deacon")[0]
    assert 0 <= rows["deacon/"]["uptime"] < 600
    witness = rows[f"{RIG}/witness"]
    assert witness["restarts"] == 3 and witness["backoff"].endswith("s more")
    # A polecat without a session is normal (no work, or done); one in backoff will be back.
    assert rows[f"{RIG}/nux"]["state"] == "missing" and not rows[f"{RIG}/nux"]["expected"]
    assert rows[f"{RIG}/max"]["backoff"].endswith("s more")
    assert report["units"] is None or isinstance(report["units"], list)


def test_an_agent_down_in_a_crash_loop_fails(running: Path, tmux_server: PrivateTmux) -> None:
    (running / RIG / "polecats" / "nux").mkdir()
    (running / "daemon" / "restart_state.json").write_text(json.dumps({"agents": {
        f"gt-{RIG}-nux": {"restart_count": 5, "crash_loop_since": "2026-01-25T18:00:00Z"}}}))
    result = status(running, tmux_server.socket, "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 1
    assert report["problems"] == [f"{RIG}/nux is in a crash loop (restarts stopped)"]
    row = next(r for r in report["agents"] if r["address"] == f"{RIG}/nux")
    assert (row["state"], row["backoff"], row["restarts"]) == ("missing", "crash loop", 5)


def test_a_missing_expected_agent_fails_unless_held(running: Path,
                                                    tmux_server: PrivateTmux) -> None:
    from gastown_units.town.holds import write_hold
    from gastown_units.town.layout import Town

    tmux_server.tmux("kill-session", "-t", f"=gt-{RIG}-refinery")
    result = status(running, tmux_server.socket)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == f"NOT OK: 1 problem(s): {RIG}/refinery is missing"
    write_hold(Town(running), f"gt-{RIG}-refinery", "alice", "on purpose")
    result = status(running, tmux_server.socket)
    assert result.returncode == 0, result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith(f"{RIG}/refinery"))
    assert row.split()[2] == "missing" and row.endswith("by alice")


def test_a_parked_rig_expects_nothing(running: Path, tmux_server: PrivateTmux) -> None:
    for role in ("witness", "refinery"):
        tmux_server.tmux("kill-session", "-t", f"=gt-{RIG}-{role}")
    wisp = running / ".beads-wisp" / "config" / f"{RIG}.json"
    wisp.parent.mkdir(parents=True, exist_ok=True)
    wisp.write_text(json.dumps({"rig": RIG, "values": {"status": "parked"}, "blocked": []}))
    assert status(running, tmux_server.socket).returncode == 0


def test_a_zombie_fails(running: Path, tmux_server: PrivateTmux) -> None:
    """A pane left with a shell and no agent (the keepers' rule: a zombie)."""
    tmux_server.tmux("kill-session", "-t", "=hq-deacon")
    tmux_server.tmux("new-session", "-d", "-s", "hq-deacon", "bash --norc --noprofile")
    poll_until(lambda: (p := tmux_server.pane("hq-deacon")) and p[1] == "bash", timeout=10,
               what="a shell in the Deacon's pane")
    result = status(running, tmux_server.socket, "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 1
    assert "deacon/ is a zombie" in " ".join(report["problems"])


def test_no_tmux_server_fails_and_says_so(town: Path) -> None:
    result = status(town, f"gtu-none-{os.getpid()}")
    assert result.returncode == 1
    assert "NOT RUNNING" in result.stdout.splitlines()[0]
    assert "tmux server" in result.stdout.splitlines()[-1]


def test_a_damaged_state_file_is_reported_not_set_aside(running: Path,
                                                        tmux_server: PrivateTmux) -> None:
    state = running / "daemon" / "restart_state.json"
    state.write_bytes(b"\xff{garbage")
    result = status(running, tmux_server.socket)
    assert "note: restart state unreadable" in result.stdout
    assert state.read_bytes() == b"\xff{garbage"
    assert not state.with_name("restart_state.json.bad").exists()


@pytest.fixture
def owner_server() -> Iterator[tuple[PrivateTmux, int]]:
    """A tmux server of another user (``nobody``), as the units' User= would run it."""
    uid = pwd.getpwnam("nobody").pw_uid
    server = PrivateTmux(socket=f"gtu-owner-{os.getpid()}")
    runuser = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin") or "runuser"
    base = [runuser, "-u", "nobody", "--", shutil.which("tmux") or "tmux", "-L",
            server.socket]
    subprocess.run([*base, "-f", "/dev/null", "new-session", "-d", "-s", "hq-deacon", "-c",
                    "/", "sleep 1000"], check=True, timeout=10,
                   env={"PATH": os.defpath, "SHELL": "/bin/sh"})  # nobody: nologin
    try:
        yield server, uid
    finally:
        subprocess.run([*base, "kill-server"], timeout=10, check=False,
                       env={"PATH": os.defpath})
        Path(f"/tmp/tmux-{uid}/{server.socket}").unlink(missing_ok=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runuser)")
def test_root_sees_the_owners_server(owner_server: tuple[PrivateTmux, int]) -> None:
    server, uid = owner_server
    with tempfile.TemporaryDirectory(prefix="gtu-status-") as tmp:
        town = make_town(Path(tmp) / "town", rigs={})
        os.chown(town, uid, -1)  # the town's owner: no unit says otherwise here
        result = status(town, server.socket, "--json", command="sleep 1000")
        report = json.loads(result.stdout)
    assert report["owner"] == "nobody"
    assert report["tmux_server"] == f"/tmp/tmux-{uid}/{server.socket}"
    rows = {r["address"]: r for r in report["agents"]}
    assert rows["deacon/"]["state"] == "running", report
    assert result.returncode == 0, result.stdout
