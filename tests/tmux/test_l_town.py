"""The services on an [L] (mid-2026) town: the town's own tmux socket, [L] session names,
[L] session creation and liveness (gastown-2026.md §0, §3.0-§3.5, §8 rows 1-7, 20).

Every test here fails on a [J]-only supervisor: it would look at the configured or default
server, find nothing, and start a second Deacon and Witness under [J] names.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import keeper
from tests.harness.poll import poll_until, wait_gone
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import (
    AGENT,
    STANDINS,
    agent_record,
    control_agent,
    make_l_town,
    make_town,
)

RIGS = {"gastown": "gt", "stockdrop": "st"}


def l_socket(town: Path) -> str:
    from gastown_units.town.dialect import socket_name

    return socket_name(str(town))


@pytest.fixture
def l_town(tmp_path: Path) -> Path:
    return make_l_town(tmp_path / "ltown", rigs=RIGS)


@pytest.fixture
def l_server(l_town: Path) -> Iterator[PrivateTmux]:
    server = PrivateTmux(socket=l_socket(l_town))
    try:
        yield server.start()
    finally:
        server.stop()


def run_once(service: str, town: Path, *args: str, gt: Path | None = None
             ) -> subprocess.CompletedProcess[str]:
    """One pass, with no socket given: the service must find the town's own."""
    argv = [sys.executable, "-m", "gastown_units", "run", service, "--town", str(town),
            "--agent-command", f"{sys.executable} {AGENT}", "--kill-grace", "1",
            "--bd-bin", str(STANDINS / "bd"), "--gt-bin", str(gt or STANDINS / "gt"),
            "--once", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          env=keeper.service_env())


def session_env(server: PrivateTmux, session: str, key: str) -> str | None:
    result = server.tmux("show-environment", "-t", f"={session}", key, check=False)
    line = result.stdout.strip()
    return line.partition("=")[2] if result.returncode == 0 and "=" in line else None


def test_the_deacon_runs_on_the_towns_socket_of_gastown_2026_3_0(
        l_town: Path, l_server: PrivateTmux) -> None:
    result = run_once("deacon-keeper", l_town, "--degraded", "true")
    assert result.returncode == 0, result.stderr
    assert f"agents on tmux -L {l_server.socket}" in result.stderr
    assert "dialect L" in result.stderr
    assert "hq-deacon" in l_server.sessions()
    record = poll_until(lambda: agent_record(l_town / "deacon"), timeout=20, what="record")
    env = record["env"]
    assert env["GT_ROLE"] == "deacon" and env["GT_SESSION"] == "hq-deacon"
    assert env["BEADS_DIR"] == "" and "BEADS_NO_DAEMON" not in env
    # §3.4: created with -e, respawned with the command, GT_PANE_ID set afterwards
    pane_id = l_server.tmux("display-message", "-p", "-t", "=hq-deacon:", "#{pane_id}").stdout
    assert session_env(l_server, "hq-deacon", "GT_PANE_ID") == pane_id.strip()
    assert session_env(l_server, "hq-deacon", "GT_AGENT") is not None
    assert len(session_env(l_server, "hq-deacon", "GT_RUN") or "") == 36  # a UUID
    # a custom command declares no process names: [L] then judges by node,claude (§3.5)
    assert session_env(l_server, "hq-deacon", "GT_PROCESS_NAMES") is None
    remain = l_server.tmux("show-options", "-t", "=hq-deacon:", "-v", "remain-on-exit",
                           check=False).stdout.strip()
    assert remain in ("off", "")


def test_rig_sessions_get_prefix_names_and_compound_roles_of_gastown_2026_3_1(
        l_town: Path, l_server: PrivateTmux) -> None:
    for rig in RIGS:
        result = run_once("witness", l_town, "--rig", rig)
        assert result.returncode == 0, result.stderr
    assert {"gt-witness", "st-witness"} <= l_server.sessions()
    assert not {"gt-gastown-witness", "gt-stockdrop-witness"} & l_server.sessions()
    record = poll_until(lambda: agent_record(l_town / "stockdrop" / "witness"), timeout=20,
                        what="witness record")
    assert record["env"]["GT_ROLE"] == "stockdrop/witness"
    assert record["env"]["GT_SESSION"] == "st-witness"
    assert record["env"]["BD_ACTOR"] == "stockdrop/witness"


def test_a_crashed_witness_comes_back_under_its_l_name(l_town: Path,
                                                       l_server: PrivateTmux) -> None:
    assert run_once("witness", l_town, "--rig", "gastown").returncode == 0
    first = poll_until(lambda: agent_record(l_town / "gastown" / "witness"), timeout=20,
                       what="record")
    control_agent(l_town / "gastown" / "witness", "crash")
    wait_gone(first["pid"])
    poll_until(lambda: "gt-witness" not in l_server.sessions(), timeout=20,
               what="the crashed session to close")
    result = run_once("witness", l_town, "--rig", "gastown")
    assert result.returncode == 0, result.stderr
    second = poll_until(lambda: (r := agent_record(l_town / "gastown" / "witness"))
                        and r["pid"] != first["pid"] and r, timeout=20, what="new record")
    assert l_server.pane("gt-witness")[0] == second["pid"]
    assert l_server.sessions() >= {"gt-witness"}
    assert "gt-gastown-witness" not in l_server.sessions()


def test_a_session_gas_town_started_is_judged_by_its_declaration_of_gastown_2026_3_5(
        l_town: Path, l_server: PrivateTmux) -> None:
    """[L]'s own witness runs ``sleep`` here and declares GT_PROCESS_NAMES=sleep: alive by
    [L]'s rule, so no kill and no second copy, though our agent is another program."""
    workdir = l_town / "gastown" / "witness"
    l_server.tmux("new-session", "-d", "-s", "gt-witness", "-c", str(workdir),
                  "-e", "GT_PROCESS_NAMES=sleep", "-e", "GT_AGENT=custom", "sleep 600")
    pane = poll_until(lambda: l_server.pane("gt-witness"), timeout=10, what="pane")
    pane_id = l_server.tmux("display-message", "-p", "-t", "=gt-witness:", "#{pane_id}")
    l_server.tmux("set-environment", "-t", "=gt-witness", "GT_PANE_ID", pane_id.stdout.strip())
    result = run_once("witness", l_town, "--rig", "gastown")
    assert result.returncode == 0, result.stderr
    assert l_server.pane("gt-witness")[0] == pane[0]
    assert agent_record(workdir) is None  # nothing of ours was started
    # the same session with a declaration that does not match is a zombie: replaced
    l_server.tmux("set-environment", "-t", "=gt-witness", "GT_PROCESS_NAMES", "claude")
    result = run_once("witness", l_town, "--rig", "gastown")
    assert result.returncode == 0, result.stderr
    assert "zombie" in result.stderr
    poll_until(lambda: agent_record(workdir), timeout=20, what="our witness")
    wait_gone(pane[0])


def test_an_auto_respawn_hook_is_disarmed_before_the_kill_of_gastown_2026_3_8(
        l_town: Path, l_server: PrivateTmux) -> None:
    """An [L] Deacon pane with its pane-died respawn hook, running a shell (a zombie):
    the keeper disarms the hook, kills, and starts one Deacon; tmux respawns nothing."""
    (l_town / "deacon").mkdir(exist_ok=True)
    l_server.tmux("new-session", "-d", "-s", "hq-deacon", "-c", str(l_town / "deacon"),
                  "exec bash --norc --noprofile")
    shell, _ = poll_until(lambda: l_server.pane("hq-deacon"), timeout=10, what="shell")
    l_server.tmux("set-option", "-t", "=hq-deacon:", "remain-on-exit", "on")
    l_server.tmux("set-hook", "-t", "=hq-deacon:", "pane-died",
                  f"respawn-pane -k -t =hq-deacon: 'touch {l_town}/respawned'")
    result = run_once("deacon-keeper", l_town, "--degraded", "true")
    assert result.returncode == 0, result.stderr
    wait_gone(shell)
    record = poll_until(lambda: agent_record(l_town / "deacon"), timeout=20, what="deacon")
    assert l_server.pane("hq-deacon")[0] == record["pid"]
    hooks = l_server.tmux("show-hooks", "-t", "=hq-deacon:", check=False).stdout
    assert "respawn-pane" not in hooks
    assert not (l_town / "respawned").exists()


def _fake_gt(tmp_path: Path, version: str) -> Path:
    gt = tmp_path / "fake-gt"
    gt.write_text(f"#!/bin/sh\n[ \"$1\" = version ] && echo 'gt version {version} (dev)' "
                  "&& exit 0\nexec " + str(STANDINS / "gt") + " \"$@\"\n")
    gt.chmod(0o755)
    return gt


def test_an_intermediate_town_is_refused_with_its_reason_of_gastown_2026_0_1(
        tmp_path: Path, tmux_server: PrivateTmux) -> None:
    town = make_town(tmp_path / "town")
    gt = _fake_gt(tmp_path, "0.9.0")
    argv = keeper.service_argv("deacon-keeper", town, tmux_server.socket, "--once",
                               "--degraded", "true")
    argv[argv.index("--gt-bin") + 1] = str(gt)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                            env=keeper.service_env())
    assert result.returncode == 78, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if "cannot tell which Gas Town" in ln]
    assert len(lines) == 1 and "0.9.0" in lines[0] and "GT_DIALECT" in lines[0]
    assert "Traceback" not in result.stderr
    assert tmux_server.sessions() == set()
    forced = subprocess.run([*argv, "--dialect", "j"], capture_output=True, text=True,
                            timeout=120, env=keeper.service_env())
    assert forced.returncode == 0, forced.stderr
    assert "hq-deacon" in tmux_server.sessions()


def test_mixed_evidence_is_refused(tmp_path: Path, tmux_server: PrivateTmux) -> None:
    """[J]-named agents on the configured server, and files only an [L] gt writes."""
    town = make_town(tmp_path / "town")
    (town / "gastown" / "witness").mkdir(parents=True, exist_ok=True)
    tmux_server.tmux("new-session", "-d", "-s", "gt-gastown-witness", "sleep 600")
    (town / "rigs.json").write_text(json.dumps({"version": 1, "rigs": {}}))
    result = keeper.run_once("witness", town, tmux_server.socket, "--rig", "gastown")
    assert result.returncode == 78, result.stderr
    assert "mixed evidence" in result.stderr and "gt-gastown-witness" in result.stderr
    assert tmux_server.sessions() == {"gt-gastown-witness"}


def test_status_shows_the_dialect_and_l_names(l_town: Path, l_server: PrivateTmux) -> None:
    assert run_once("witness", l_town, "--rig", "gastown").returncode == 0
    env = keeper.service_env({"GT_TOWN_ROOT": str(l_town)})
    result = subprocess.run([sys.executable, "-m", "gastown_units", "status", "--json"],
                            capture_output=True, text=True, timeout=60, env=env)
    report = json.loads(result.stdout)
    assert report["dialect"] == "L"
    assert report["tmux_server"] == l_server.socket
    rows = {a["session"]: a for a in report["agents"]}
    assert rows["gt-witness"]["state"] == "running"
    assert "hq-boot" in rows and "st-witness" in rows


def test_a_j_copy_on_another_server_blocks_the_l_start(tmp_path: Path) -> None:
    """A town upgraded in place: its [J] Witness still runs as ``gt-gastown-witness`` on
    another server. The [L] keeper, forced with GT_DIALECT=l, starts no second Witness
    as ``gt-witness`` (the names differ, the agent is the same)."""
    import shutil
    import tempfile

    from tests.tmux.test_split_town import by_hand

    sockets = Path(tempfile.mkdtemp(prefix="gtu-lsplit-", dir="/tmp"))
    town = make_l_town(tmp_path / "ltown", rigs=RIGS)
    ours = PrivateTmux(sockets, l_socket(town))
    theirs = PrivateTmux(sockets, "default")
    try:
        ours.start()
        theirs.start()
        old = by_hand(theirs, "gt-gastown-witness", town / "gastown" / "witness")
        argv = [sys.executable, "-m", "gastown_units", "run", "witness", "--town", str(town),
                "--rig", "gastown", "--dialect", "l", "--agent-command",
                f"{sys.executable} {AGENT}", "--bd-bin", str(STANDINS / "bd"),
                "--gt-bin", str(STANDINS / "gt"), "--once"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                                env=keeper.service_env({"TMUX_TMPDIR": str(sockets)}))
        assert "gt-gastown-witness" in result.stderr, result.stderr
        assert "gt-witness" not in ours.sessions()
        assert theirs.pane("gt-gastown-witness")[0] == old
    finally:
        ours.stop()
        theirs.stop()
        shutil.rmtree(sockets, ignore_errors=True)


def test_nudges_wait_for_the_nudge_queue_lock_of_gastown_2026_3_7(
        l_town: Path, l_server: PrivateTmux) -> None:
    """`gt nudge` holds .runtime/nudge_queue/<session>/.lock while it types: our nudge
    waits for it (and gives up, typing nothing, if it stays taken)."""
    import contextlib
    import fcntl
    import os
    import threading

    from gastown_units.config import Settings
    from gastown_units.errors import ToolError
    from gastown_units.runtime.loop import Context
    from gastown_units.runtime.notify import Notifier
    from gastown_units.services.sessions import SessionKeeper
    from gastown_units.town.layout import Town

    (l_town / "deacon").mkdir(exist_ok=True)
    l_server.tmux("new-session", "-d", "-s", "hq-deacon", "-c", str(l_town / "deacon"),
                  f"exec {sys.executable} {AGENT}")
    poll_until(lambda: agent_record(l_town / "deacon"), timeout=20, what="agent")
    queue = l_town / ".runtime" / "nudge_queue" / "hq-deacon"
    queue.mkdir(parents=True)
    fd = os.open(queue / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    settings = Settings(tmux_socket=l_server.socket)
    from gastown_units.ports.tmux import Tmux

    tmux = Tmux(socket=settings.tmux_socket)
    keeper_ = SessionKeeper(Town(l_town), tmux, start_timeout=0.5, kill_grace=1)
    ctx = Context(Notifier(), lambda: False)
    inputs = l_town / "deacon" / ".agent" / "input.log"
    try:
        with pytest.raises(ToolError, match="nudge queue of hq-deacon stayed locked"):
            keeper_.nudge("hq-deacon", "first nudge", ctx)
        assert "first nudge" not in (inputs.read_text() if inputs.exists() else "")
        timer = threading.Timer(0.2, lambda: os.close(fd))
        timer.start()
        keeper2 = SessionKeeper(Town(l_town), tmux, start_timeout=20, kill_grace=1)
        assert keeper2.nudge("hq-deacon", "second nudge", ctx)
        timer.join()
        poll_until(lambda: inputs.exists() and "second nudge" in inputs.read_text(),
                   timeout=20, what="the nudge typed once the lock was free")
    finally:
        with contextlib.suppress(OSError):  # the timer may have closed it
            os.close(fd)
