"""Operator holds against real tmux: no service starts, restarts or kills a held agent.

Each service's ``--once`` pass meets a held agent whose session was killed (or is a
zombie) and leaves it alone; after ``gastown-units release`` the next pass acts again. The
commands run as real processes (``python -m gastown_units hold …``), like an operator's.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from gastown_units.config import Settings
from gastown_units.runtime.loop import Context
from gastown_units.runtime.notify import Notifier
from gastown_units.services.actor import Kept, OperatorHeld
from gastown_units.services.deacon_keeper import DeaconKeeper
from gastown_units.services.profiles import Reason
from gastown_units.town.holds import write_hold
from gastown_units.town.identity import DEACON, Role
from tests.harness import keeper
from tests.harness.gitrig import age_worktree
from tests.harness.poll import poll_until
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import AGENT, STANDINS, agent_record
from tests.tmux.test_lifecycle_mail import CYCLE, inbox_ids, seed, start_witness
from tests.tmux.test_one_actor import request_shutdown, witness_inbox
from tests.tmux.test_polecat_health import NO_BACKOFF, RIG, crash, mails, polecat, sweep

DEGRADED = ("--degraded", "true")
NUX = f"gt-{RIG}-nux"


def gtu(town: Path, server: PrivateTmux, *args: str, stdin: int | None = subprocess.DEVNULL
        ) -> subprocess.CompletedProcess[str]:
    """``gastown-units ARGS --town TOWN`` as an operator runs it (the town's socket)."""
    return subprocess.run([sys.executable, "-m", "gastown_units", *args, "--town", str(town)],
                          capture_output=True, text=True, timeout=60, stdin=stdin,
                          env=keeper.service_env({"GT_TMUX_SOCKET": server.socket}))


def hold(town: Path, server: PrivateTmux, agent: str) -> None:
    result = gtu(town, server, "hold", agent, "--reason", "test")
    assert result.returncode == 0 and "is now held by" in result.stdout, result.stderr


def release(town: Path, server: PrivateTmux, agent: str) -> None:
    result = gtu(town, server, "release", agent)
    assert result.returncode == 0 and "released" in result.stdout, result.stderr


def zombie(server: PrivateTmux, session: str) -> int:
    server.tmux("new-session", "-d", "-s", session, "exec sh")
    pid, _ = poll_until(lambda: server.pane(session), timeout=10, what=f"zombie {session}")
    return pid


# --- deacon-keeper ----------------------------------------------------------------------------
def test_held_deacon_is_not_started_until_released(town: Path,
                                                   tmux_server: PrivateTmux) -> None:
    hold(town, tmux_server, "deacon")
    for _ in range(2):
        result = keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED)
        assert result.returncode == 0, result.stderr  # held: no failure of the pass
        assert "hq-deacon is held by" in result.stderr
        assert "hq-deacon" not in tmux_server.sessions()
    release(town, tmux_server, "hq-deacon")
    result = keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED)
    assert result.returncode == 0, result.stderr
    assert tmux_server.pane("hq-deacon")[1] == "claude"


def test_held_zombie_deacon_is_not_killed(town: Path, tmux_server: PrivateTmux) -> None:
    shell = zombie(tmux_server, "hq-deacon")
    hold(town, tmux_server, "hq-deacon")
    result = keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED)
    assert result.returncode == 0, result.stderr
    assert "not killing it" in result.stderr
    assert tmux_server.pane("hq-deacon")[0] == shell
    release(town, tmux_server, "deacon/")
    result = keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED)
    assert result.returncode == 0, result.stderr
    pid, command = tmux_server.pane("hq-deacon")
    assert pid != shell and command == "claude"


def test_held_boot_is_not_spawned(town: Path, tmux_server: PrivateTmux) -> None:
    hold(town, tmux_server, "boot")
    result = keeper.run_once("deacon-keeper", town, tmux_server.socket)
    assert result.returncode == 0, result.stderr
    assert "gt-boot" not in tmux_server.sessions()
    assert "hq-deacon" in tmux_server.sessions()  # only the held agent is left alone


def test_held_deacon_gets_no_boot_triage(town: Path, tmux_server: PrivateTmux) -> None:
    """Boot's triage would restart the Deacon behind the operator's back."""
    first = keeper.run_once("deacon-keeper", town, tmux_server.socket)
    assert first.returncode == 0, first.stderr
    pid, _ = tmux_server.pane("hq-deacon")
    tmux_server.tmux("kill-session", "-t", "=gt-boot", check=False)
    hold(town, tmux_server, "deacon")
    result = keeper.run_once("deacon-keeper", town, tmux_server.socket)
    assert result.returncode == 0, result.stderr
    assert "gt-boot" not in tmux_server.sessions()
    assert tmux_server.pane("hq-deacon")[0] == pid


def test_hold_written_after_the_snapshot_is_honoured_after_the_lock(
        town: Path, tmux_server: PrivateTmux) -> None:
    """The race: a service looked (Deacon missing), then the operator held it; the actor
    reads the hold again once it holds the agent's lock, and does nothing."""
    settings = Settings.load({"GT_CONFIG": "", "GT_TOWN_ROOT": str(town),
                              "GT_TMUX_SOCKET": tmux_server.socket,
                              "GT_AGENT_COMMAND": f"{sys.executable} {AGENT}",
                              "GT_BD_BIN": str(STANDINS / "bd"),
                              "GT_GT_BIN": str(STANDINS / "gt")})
    service = DeaconKeeper(settings)
    ctx = Context(Notifier(), lambda: False)
    service.setup(ctx)
    try:
        agent = service.agent(Role.DEACON)
        snap = service.tmux.snapshot()  # mid-pass: the Deacon is missing
        assert snap.first_pane(DEACON.session) is None
        write_hold(service.town, DEACON.session, "alice", "race")
        kept = service.actor.keep(DEACON, agent, snap, ctx)
        assert kept.outcome is Kept.ON_HOLD and "held by alice" in kept.detail
        with service.actor.hold(DEACON, "test") as mine:
            assert mine
            with pytest.raises(OperatorHeld):
                service.actor.start(DEACON, agent, ctx, Reason.KEEP)
            with pytest.raises(OperatorHeld):
                service.actor.restart(DEACON, agent, None, ctx, Reason.KEEP)
        assert ctx.failures == []
        assert DEACON.session not in tmux_server.sessions()
    finally:
        service.close()


def test_a_damaged_hold_file_holds(town: Path, tmux_server: PrivateTmux) -> None:
    (town / "daemon" / "holds").mkdir()
    (town / "daemon" / "holds" / "hq-deacon.json").write_text("{half a file")
    result = keeper.run_once("deacon-keeper", town, tmux_server.socket, *DEGRADED)
    assert result.returncode == 0, result.stderr
    assert "hold file unreadable" in result.stderr
    assert "hq-deacon" not in tmux_server.sessions()


# --- witness@ and refinery@ ---------------------------------------------------------------------
@pytest.mark.parametrize("service", ["witness", "refinery"])
def test_held_rig_agent_is_not_restarted_until_released(town: Path, tmux_server: PrivateTmux,
                                                        service: str) -> None:
    session = f"gt-{RIG}-{service}"
    first = keeper.run_once(service, town, tmux_server.socket, "--rig", RIG)
    assert first.returncode == 0, first.stderr
    hold(town, tmux_server, f"{RIG}/{service}")
    tmux_server.tmux("kill-session", "-t", f"={session}")
    result = keeper.run_once(service, town, tmux_server.socket, "--rig", RIG)
    assert result.returncode == 0, result.stderr
    assert f"{session} is held by" in result.stderr
    assert session not in tmux_server.sessions()
    release(town, tmux_server, session)
    again = keeper.run_once(service, town, tmux_server.socket, "--rig", RIG)
    assert again.returncode == 0, again.stderr
    assert tmux_server.pane(session)[1] == "claude"


def test_held_zombie_witness_is_not_killed(town: Path, tmux_server: PrivateTmux) -> None:
    shell = zombie(tmux_server, f"gt-{RIG}-witness")
    hold(town, tmux_server, f"{RIG}-witness")
    result = keeper.run_once("witness", town, tmux_server.socket, "--rig", RIG)
    assert result.returncode == 0, result.stderr
    assert tmux_server.pane(f"gt-{RIG}-witness")[0] == shell


def test_witness_leaves_a_held_polecats_shutdown_request_for_the_release(
        town: Path, tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")
    pid = agent_record(tree)["pid"]
    hold(town, tmux_server, f"{RIG}/nux")
    request = request_shutdown(town, "nux")
    result = keeper.run_once("witness", town, tmux_server.socket, "--rig", RIG)
    assert result.returncode == 0, result.stderr
    assert tmux_server.pane(NUX)[0] == pid and tree.exists()
    assert witness_inbox(town) == [request], "the request must wait, not be lost"
    release(town, tmux_server, f"{RIG}/nux")
    done = keeper.run_once("witness", town, tmux_server.socket, "--rig", RIG)
    assert done.returncode == 0, done.stderr
    assert NUX not in tmux_server.sessions() and witness_inbox(town) == []


def test_witness_does_not_nudge_a_held_stuck_polecat(town: Path,
                                                    tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")
    hold(town, tmux_server, f"{RIG}/nux")
    age_worktree(tree, time.time() - 2 * 3600)
    result = keeper.run_once("witness", town, tmux_server.socket, "--rig", RIG,
                             "--stuck-threshold", "60", "--ladder-interval", "0")
    assert result.returncode == 0, result.stderr
    assert "nudged" not in result.stderr
    inputs = tree / ".agent" / "input.log"
    assert not inputs.exists() or "NUDGE" not in inputs.read_text()


# --- polecat-health ----------------------------------------------------------------------------
def test_held_crashed_polecat_is_not_restarted_until_released(
        town: Path, tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")
    hold(town, tmux_server, f"{RIG}/polecats/nux")
    crash(tmux_server, tree, "nux")
    result = sweep(town, tmux_server, *NO_BACKOFF)
    assert result.returncode == 0, result.stderr
    assert f"{NUX} is held by" in result.stderr
    assert "CRASH DETECTED" not in result.stderr
    assert NUX not in tmux_server.sessions()
    assert not any(s.startswith(("CRASHED_POLECAT", "ORPHANED_WORK"))
                   for s in mails(town, f"{RIG}/witness"))
    release(town, tmux_server, NUX)
    again = sweep(town, tmux_server, *NO_BACKOFF)
    assert again.returncode == 0, again.stderr
    assert "no longer held" in again.stderr
    assert tmux_server.pane(NUX)[1] == "claude"


def test_held_zombie_polecat_is_not_killed(town: Path, tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")
    tmux_server.tmux("kill-session", "-t", f"={NUX}")
    tmux_server.tmux("new-session", "-d", "-s", NUX, "-c", str(tree), "exec sh")
    shell, _ = poll_until(lambda: tmux_server.pane(NUX), timeout=10, what="zombie polecat")
    hold(town, tmux_server, NUX)
    result = sweep(town, tmux_server, *NO_BACKOFF)
    assert result.returncode == 0, result.stderr
    assert tmux_server.pane(NUX)[0] == shell


# --- lifecycle-mail --------------------------------------------------------------------------
def test_lifecycle_request_for_a_held_agent_waits_for_the_release(
        town: Path, tmux_server: PrivateTmux) -> None:
    pid = start_witness(town, tmux_server)
    hold(town, tmux_server, f"{RIG}/witness")
    request = seed(town, f"{RIG}/witness", CYCLE)
    result = keeper.run_once("lifecycle-mail", town, tmux_server.socket)
    assert result.returncode == 0, result.stderr
    assert "left in the inbox: gt-gastown-witness is held by" in result.stderr
    assert tmux_server.pane(f"gt-{RIG}-witness")[0] == pid
    assert request in inbox_ids(town), "not acted on and not lost"
    release(town, tmux_server, f"{RIG}/witness")
    again = keeper.run_once("lifecycle-mail", town, tmux_server.socket)
    assert again.returncode == 0, again.stderr
    assert tmux_server.pane(f"gt-{RIG}-witness")[0] != pid
    assert request not in inbox_ids(town)


# --- capture and attach ----------------------------------------------------------------------
def test_capture_shows_what_the_agent_printed(town: Path, tmux_server: PrivateTmux) -> None:
    start_witness(town, tmux_server)
    poll_until(lambda: "Welcome to Claude Code" in gtu(town, tmux_server, "capture",
                                                       f"{RIG}/witness").stdout,
               timeout=20, what="the stand-in's greeting in capture")
    short = gtu(town, tmux_server, "capture", f"gt-{RIG}-witness", "-n", "3")
    assert short.returncode == 0, short.stderr
    missing = gtu(town, tmux_server, "capture", f"{RIG}/refinery")
    assert missing.returncode == 1 and "has no session gt-gastown-refinery" in missing.stderr


def test_capture_decodes_non_utf8_output_with_replacement(town: Path,
                                                         tmux_server: PrivateTmux) -> None:
    tmux_server.tmux("new-session", "-d", "-s", "hq-deacon",
                     r"printf 'caf\351 latin-1\n'; exec sleep 60")
    out = poll_until(lambda: (r := gtu(town, tmux_server, "capture", "deacon")).returncode == 0
                     and "latin-1" in r.stdout and r.stdout, timeout=20,
                     what="the printed line in capture")
    assert "caf" in out and "Traceback" not in out


def test_attach_without_a_terminal_says_so(town: Path, tmux_server: PrivateTmux) -> None:
    start_witness(town, tmux_server)
    result = gtu(town, tmux_server, "attach", f"{RIG}/witness")
    assert result.returncode == 1
    assert "attach needs a terminal: standard input is not a tty" in result.stderr
    missing = gtu(town, tmux_server, "attach", "hq-deacon")
    assert missing.returncode == 1 and "has no session hq-deacon" in missing.stderr
