"""deacon-keeper in an [L] town (gastown-2026.md §1.5a, §6.3, §6.10, §6.12; §8 rows 11,
12): [L] thresholds, the in-progress gate of the nudge, restart_state.json's ``deacon``
entry (backoff, crash loop). Real tmux on a private socket, the stand-in agent."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gastown_units.ports.agent_locks import AgentLocks
from tests.harness import keeper
from tests.harness.poll import poll_until, wait_gone
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import STANDINS

DEGRADED = ("--degraded", "true")
QUIET = {"GT_DIALECT": "l", "STANDIN_HEARTBEAT_SECONDS": "0"}
ZERO = "0001-01-01T00:00:00Z"


def l_town(town: Path) -> Path:
    (town / ".standin").mkdir(exist_ok=True)
    (town / ".standin" / "bd.mode").write_text("N\n")
    (town / ".standin" / "gt.dialect").write_text("L\n")
    return town


def run(town: Path, server: PrivateTmux, *args: str,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = keeper.run_once("deacon-keeper", town, server.socket, *DEGRADED, *args,
                             env={**QUIET, **(env or {})})
    assert result.returncode == 0, result.stderr
    return result


def stamp(minutes_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_heartbeat(town: Path, minutes_old: float) -> None:
    (town / "deacon" / "heartbeat.json").write_text(json.dumps({
        "timestamp": stamp(minutes_old), "cycle": 3, "healthy_agents": 1,
        "unhealthy_agents": 0}, indent=2))


def restart_state(town: Path) -> Path:
    return town / "daemon" / "restart_state.json"


def write_state(town: Path, deacon: dict[str, object]) -> None:
    entry = {"last_restart": ZERO, "restart_count": 0, "backoff_until": ZERO,
             "crash_loop_since": ZERO, **deacon}
    path = restart_state(town)
    path.write_text(json.dumps({"agents": {"deacon": entry, "mayor": {"restart_count": 1}},
                                "kept": True}, indent=2))
    os.chmod(path, 0o600)


def in_progress_work(town: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BEADS_", "GT_", "BD_"))}
    out = subprocess.run([str(STANDINS / "bd"), "create", "--title=busy", "--type=task",
                          "--json"], cwd=town / "gastown", env=env, capture_output=True,
                         text=True, timeout=30, check=True).stdout
    subprocess.run([str(STANDINS / "bd"), "update", json.loads(out)["id"],
                    "--status=in_progress"], cwd=town, env=env, capture_output=True,
                   text=True, timeout=30, check=True)


def test_kills_at_20_minutes_and_books_the_restart(town: Path,
                                                   tmux_server: PrivateTmux) -> None:
    """[J] only nudges at 21 min (kill > 30 min); [L] restarts at >= 20 min."""
    l_town(town)
    run(town, tmux_server)
    old, _ = poll_until(lambda: tmux_server.pane("hq-deacon"), timeout=20, what="deacon")
    assert json.loads(restart_state(town).read_text())["agents"]["deacon"]["restart_count"] == 1
    write_heartbeat(town, 21)
    blocked = run(town, tmux_server, "--deacon-grace", "0")
    assert "backing off" in blocked.stderr and tmux_server.pane("hq-deacon")[0] == old
    write_state(town, {"restart_count": 1, "last_restart": stamp(1), "backoff_until": stamp(0.5)})
    result = run(town, tmux_server, "--deacon-grace", "0")
    assert "killing and restarting" in result.stderr
    new, _ = poll_until(lambda: tmux_server.pane("hq-deacon"), timeout=20, what="deacon")
    assert new != old
    wait_gone(old)
    data = json.loads(restart_state(town).read_text())
    entry = data["agents"]["deacon"]
    assert set(entry) == {"last_restart", "restart_count", "backoff_until", "crash_loop_since"}
    assert entry["restart_count"] == 2 and entry["crash_loop_since"] == ZERO
    assert data["kept"] is True and data["agents"]["mayor"] == {"restart_count": 1}
    assert stat.S_IMODE(os.stat(restart_state(town)).st_mode) == 0o600


def test_an_operator_threshold_wins_over_the_l_default(town: Path,
                                                       tmux_server: PrivateTmux) -> None:
    l_town(town)
    run(town, tmux_server)
    old = tmux_server.pane("hq-deacon")
    write_state(town, {"restart_count": 1, "last_restart": stamp(1), "backoff_until": stamp(0.5)})
    write_heartbeat(town, 21)
    result = run(town, tmux_server, "--deacon-grace", "0",
                 env={"GT_DEACON_HEARTBEAT_KILL": "40m"})
    assert tmux_server.pane("hq-deacon") == old
    assert "backing off" not in result.stderr and "killing" not in result.stderr
    result = run(town, tmux_server, "--deacon-grace", "0")  # the [L] default again: 20 min
    assert "killing and restarting" in result.stderr


def test_a_heartbeat_older_than_our_start_is_waited_out(town: Path,
                                                        tmux_server: PrivateTmux) -> None:
    l_town(town)
    run(town, tmux_server)
    old = poll_until(lambda: tmux_server.pane("hq-deacon"), timeout=20, what="deacon")
    write_heartbeat(town, 25)  # older than our start (as if left by the previous Deacon)
    write_state(town, {"restart_count": 1, "last_restart": stamp(1), "backoff_until": stamp(0.5)})
    result = run(town, tmux_server)  # the [L] default grace: 5 min after our start
    assert tmux_server.pane("hq-deacon") == old
    assert "killing" not in result.stderr and "backing off" not in result.stderr
    result = run(town, tmux_server, "--deacon-grace", "0")  # grace over: judged by age
    assert "killing and restarting" in result.stderr


def test_a_stale_heartbeat_is_nudged_only_while_work_is_in_progress(
        town: Path, tmux_server: PrivateTmux) -> None:
    l_town(town)
    run(town, tmux_server)
    pane = tmux_server.pane("hq-deacon")
    write_heartbeat(town, 16)  # [J] nudges at 15 min whatever the work
    quiet = run(town, tmux_server, "--deacon-grace", "0")
    assert "HEALTH_CHECK" not in quiet.stderr
    in_progress_work(town)
    busy = run(town, tmux_server, "--deacon-grace", "0")
    assert "nudged it (HEALTH_CHECK)" in busy.stderr
    log = town / "deacon" / ".agent" / "input.log"
    poll_until(lambda: log.exists() and "HEALTH_CHECK: heartbeat stale" in log.read_text(),
               timeout=20, what="HEALTH_CHECK in the Deacon's input")
    assert tmux_server.pane("hq-deacon") == pane


def test_a_crash_loop_keeps_the_deacon_down_until_cleared(town: Path,
                                                          tmux_server: PrivateTmux) -> None:
    l_town(town)
    write_state(town, {"restart_count": 5, "last_restart": stamp(1),
                       "crash_loop_since": stamp(1)})
    before = restart_state(town).read_text()
    result = run(town, tmux_server)
    assert "hq-deacon" not in tmux_server.sessions()
    assert "gt daemon clear-backoff deacon" in result.stderr
    assert restart_state(town).read_text() == before  # nothing rewritten, nothing dropped
    write_state(town, {"restart_count": 0, "last_restart": stamp(1)})  # what clear-backoff does
    run(town, tmux_server)
    poll_until(lambda: tmux_server.pane("hq-deacon"), timeout=20, what="deacon")
    data = json.loads(restart_state(town).read_text())
    assert data["kept"] is True and data["agents"]["mayor"] == {"restart_count": 1}
    assert data["agents"]["deacon"]["restart_count"] == 1
    assert stat.S_IMODE(os.stat(restart_state(town)).st_mode) == 0o600


def test_a_crash_loop_also_stops_the_heartbeat_kill(town: Path,
                                                    tmux_server: PrivateTmux) -> None:
    l_town(town)
    run(town, tmux_server)
    pane = tmux_server.pane("hq-deacon")
    write_state(town, {"restart_count": 5, "crash_loop_since": stamp(1)})
    write_heartbeat(town, 45)
    result = run(town, tmux_server, "--deacon-grace", "0")
    assert tmux_server.pane("hq-deacon") == pane
    assert "killing" not in result.stderr


def test_backoff_defers_the_start(town: Path, tmux_server: PrivateTmux) -> None:
    l_town(town)
    write_state(town, {"restart_count": 2, "last_restart": stamp(0),
                       "backoff_until": stamp(-10)})  # ten minutes from now
    result = run(town, tmux_server)
    assert "hq-deacon" not in tmux_server.sessions()
    assert "backing off" in result.stderr
    write_state(town, {"restart_count": 2, "last_restart": stamp(2), "backoff_until": stamp(1)})
    run(town, tmux_server)
    poll_until(lambda: tmux_server.pane("hq-deacon"), timeout=20, what="deacon")
    assert json.loads(restart_state(town).read_text())["agents"]["deacon"]["restart_count"] == 3


def test_another_service_restarting_the_deacon_is_not_doubled(
        town: Path, tmux_server: PrivateTmux) -> None:
    """Race: lifecycle-mail holds the Deacon's lock (a cycle in progress) when the keeper
    sees a stuck heartbeat: no second kill, no restart booked."""
    l_town(town)
    run(town, tmux_server)
    pane = tmux_server.pane("hq-deacon")
    write_state(town, {"restart_count": 1, "last_restart": stamp(1), "backoff_until": stamp(0.5)})
    booked = 1
    write_heartbeat(town, 25)
    other = AgentLocks(town / "daemon" / "agents", "lifecycle-mail")
    assert other.acquire("hq-deacon", "cycle")
    try:
        run(town, tmux_server, "--deacon-grace", "0")
    finally:
        other.release_all()
    assert tmux_server.pane("hq-deacon") == pane
    assert json.loads(restart_state(town).read_text())["agents"]["deacon"]["restart_count"] == \
        booked
    result = run(town, tmux_server, "--deacon-grace", "0")  # the lock is free: now it acts
    assert "killing and restarting" in result.stderr
    assert json.loads(restart_state(town).read_text())["agents"]["deacon"]["restart_count"] == \
        booked + 1


def _write_tracker(town: Path, tracker: object) -> None:
    path = town / "mayor" / "daemon.json"
    data = json.loads(path.read_text()) if path.exists() else {"type": "daemon-config",
                                                                "version": 1}
    data.setdefault("patrols", {})["restart_tracker"] = tracker
    path.write_text(json.dumps(data, indent=2))


def _booked(town: Path) -> tuple[float, float, int]:
    from gastown_units.town.jsonfile import parse_time

    entry = json.loads(restart_state(town).read_text())["agents"]["deacon"]
    last, until = parse_time(entry["last_restart"]), parse_time(entry["backoff_until"])
    assert last is not None and until is not None, entry
    return last.timestamp(), until.timestamp(), entry["restart_count"]


def test_the_towns_restart_tracker_settings_are_honoured(town: Path,
                                                         tmux_server: PrivateTmux) -> None:
    """§6.10: ``patrols.restart_tracker`` of mayor/daemon.json sets the backoff (ns) and its
    multiplier; the crash-loop count is the town's too."""
    l_town(town)
    _write_tracker(town, {"initial_backoff": 2_000_000_000, "backoff_multiplier": 3.0,
                          "crash_loop_count": 3, "max_backoff": 0})  # 0: the default
    result = run(town, tmux_server)
    assert "restart backoff used" not in result.stderr, result.stderr
    poll_until(lambda: tmux_server.pane("hq-deacon"), timeout=20, what="deacon")
    last, until, count = _booked(town)
    assert count == 1 and abs(until - last - 2.0) < 0.01  # not Gas Town's default 30 s
    write_state(town, {"restart_count": 1, "last_restart": stamp(0.2)})
    tmux_server.tmux("kill-session", "-t", "=hq-deacon")
    run(town, tmux_server)
    poll_until(lambda: tmux_server.pane("hq-deacon"), timeout=20, what="deacon again")
    last, until, count = _booked(town)
    assert count == 2 and abs(until - last - 6.0) < 0.01  # 2 s x 3
    entry = json.loads(restart_state(town).read_text())["agents"]["deacon"]
    assert entry["crash_loop_since"] == ZERO
    write_state(town, {"restart_count": 2, "last_restart": stamp(0.2)})
    tmux_server.tmux("kill-session", "-t", "=hq-deacon")
    run(town, tmux_server)
    poll_until(lambda: tmux_server.pane("hq-deacon"), timeout=20, what="deacon, third")
    entry = json.loads(restart_state(town).read_text())["agents"]["deacon"]
    assert entry["restart_count"] == 3 and entry["crash_loop_since"] != ZERO  # the town's 3


def test_unusable_restart_tracker_settings_fall_back_to_the_defaults(
        town: Path, tmux_server: PrivateTmux) -> None:
    """A value of the wrong type (a Go duration string, a boolean) is named in the journal
    and replaced by Gas Town's default (30 s); the start goes on, nothing crashes."""
    l_town(town)
    _write_tracker(town, {"initial_backoff": "2s", "crash_loop_count": True})
    result = run(town, tmux_server)
    assert "patrols.restart_tracker.initial_backoff must be a whole number of nanoseconds" \
        in result.stderr, result.stderr
    assert "patrols.restart_tracker.crash_loop_count must be a whole number" in result.stderr
    assert "Traceback" not in result.stderr
    poll_until(lambda: tmux_server.pane("hq-deacon"), timeout=20, what="deacon")
    last, until, count = _booked(town)
    assert count == 1 and abs(until - last - 30.0) < 0.01
