"""Gas Town's own ``gt down`` and ``gt up`` beside the installed units ([J] town): the
town stays down after ``gt down``, ``systemctl start gastown.target`` (every time) and
``gt up`` bring it back, and no second daemon appears (gastown-2026.md §6.11, §8 rows
8-10)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.harness.guest import GuestSystemd
from tests.harness.guest_town import STANDIN_DIR, configure, new_town, tmux_panes

OWNER = "alice"
RIG = "gastown"
SESSIONS = ("hq-deacon", f"gt-{RIG}-witness", f"gt-{RIG}-refinery")
UNITS = ("gastown-deacon-keeper.service", f"gastown-witness@{RIG}.service",
         f"gastown-refinery@{RIG}.service")


@pytest.fixture(scope="module")
def town(guest: GuestSystemd) -> Iterator[str]:
    path = new_town(guest, OWNER)
    configure(guest, OWNER, {"GT_TOWN_ROOT": path,
                             "GT_AGENT_COMMAND": f"{STANDIN_DIR}/agent",
                             "GT_DEGRADED": "true", "GT_INTERVAL": "1"})
    guest.write_file(f"{path}/.standin/gt.down-grace", "1", owner=OWNER)
    guest.systemctl("enable", "--now", "gastown.target", *UNITS)
    yield path
    guest.systemctl("stop", "gastown.target", check=False)


def _gt(guest: GuestSystemd, town: str, *args: str) -> tuple[int, str]:
    result = guest.run(["sh", "-c", 'cd "$1" && shift && exec /usr/local/bin/gt "$@"', "gt",
                        town, *args], user=OWNER, check=False, timeout=120)
    return result.returncode, result.stdout + result.stderr


def _up(guest: GuestSystemd) -> dict[str, int]:
    panes = tmux_panes(guest, OWNER)
    if all(s in panes and panes[s][1] == "claude" for s in SESSIONS):
        return {s: panes[s][0] for s in SESSIONS}
    return {}


def _mark(guest: GuestSystemd, town: str) -> dict[str, str] | None:
    result = guest.run(["cat", f"{town}/daemon/units/town-down.json"], check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def _beats(guest: GuestSystemd, town: str) -> int:
    state = json.loads(guest.read_file(f"{town}/daemon/state.json"))
    return int(state["heartbeat_count"])


def _stays_down(guest: GuestSystemd, town: str, passes: int = 5) -> None:
    """The keepers run ``passes`` more passes (1 s apart) and start nothing meanwhile."""
    start = _beats(guest, town)

    def done() -> bool:
        running = set(tmux_panes(guest, OWNER)) & set(SESSIONS)
        assert not running, f"restarted while the town is down: {running}"
        return _beats(guest, town) >= start + passes
    guest.wait_for(done, timeout=60, what=f"{passes} more passes, nothing restarted")


def _down(guest: GuestSystemd, town: str) -> None:
    guest.wait_for(lambda: _up(guest), timeout=90, what="deacon, witness, refinery")
    code, out = _gt(guest, town, "down")
    assert code == 0, out
    assert not set(tmux_panes(guest, OWNER)) & set(SESSIONS)
    mark = _mark(guest, town)
    assert mark is not None and "gt down" in mark["reason"]
    _stays_down(guest, town)
    status = guest.show(UNITS[0], "StatusText")["StatusText"]
    assert status.startswith("town down since "), status
    assert "systemctl start gastown.target" in status


def test_gt_down_then_systemctl_start_target_resumes_every_time(guest: GuestSystemd,
                                                                town: str) -> None:
    for round_ in (1, 2):  # the oneshot runs again on every start of the target
        _down(guest, town)
        guest.systemctl("start", "gastown.target")
        guest.wait_for(lambda: _mark(guest, town) is None, timeout=30,
                       what=f"mark cleared by gastown-resume.service (round {round_})")
        guest.wait_for(lambda: _up(guest), timeout=90, what="agents started again")
    log = guest.journal("-u", "gastown-resume.service", "-o", "cat")
    assert log.count("town resumed (it was down since ") == 2, log
    for unit in UNITS:
        assert guest.show(unit, "ActiveState")["ActiveState"] == "active"
        assert guest.show(unit, "NRestarts")["NRestarts"] == "0"
    keeper_log = guest.journal("-u", UNITS[0], "-o", "cat")
    assert "gt down holds daemon/shutdown.lock: not acting while it runs" in keeper_log
    assert "Traceback" not in keeper_log


def test_gt_down_then_gt_up_resumes_without_a_second_daemon(guest: GuestSystemd,
                                                            town: str) -> None:
    _down(guest, town)
    code, out = _gt(guest, town, "up")
    # [J]: gt up's `gt daemon run` loses our lock; gt up starts the agents itself
    assert code == 1 and "lock held by another process" in out, out
    started = guest.wait_for(lambda: _up(guest), timeout=60, what="gt up's agents")
    guest.wait_for(lambda: _mark(guest, town) is None, timeout=60,
                   what="mark cleared on gt up's Deacon")
    daemons = guest.run(["pgrep", "-f", "gt daemon run"], check=False)
    assert daemons.returncode == 1, daemons.stdout
    shared = guest.run(["python3", "-c", "import fcntl, os, sys; fcntl.flock(os.open("
                        "sys.argv[1], os.O_RDONLY), fcntl.LOCK_SH | fcntl.LOCK_NB)",
                        f"{town}/daemon/daemon.lock"], check=False)
    assert shared.returncode == 0, shared.stderr  # nobody holds it exclusively
    before = _beats(guest, town)
    guest.wait_for(lambda: _beats(guest, town) >= before + 3, timeout=30, what="passes")
    assert _up(guest) == started  # gt up's agents kept, not replaced
    code, status = _gt(guest, town, "daemon", "status")
    assert status.startswith("○ Daemon is not running"), status
    for unit in UNITS:
        assert guest.show(unit, "ActiveState")["ActiveState"] == "active"
    assert "the town is up again, resuming" in guest.journal("-u", "gastown-*", "-o", "cat")
