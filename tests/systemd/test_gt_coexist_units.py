"""Gas Town's own ``gt down`` and ``gt up`` beside the installed units, in a [J] and in an
[L] town: the town stays down after ``gt down``, ``systemctl start gastown.target`` (every
time) and ``gt up`` bring it back, and no second daemon appears (gastown-2026.md §3.0,
§6.11, §8 rows 8-10).

One guest per dialect (module-scoped, parametrized). In the [L] guest the agents, ``gt``
and the panes read here are on the town's own socket ``gt-<hash6>`` under [L] names; a
supervisor that ignored [L] would put [J]-named agents on the default server, and every
``_up`` below (which reads only the [L] socket for the [L] names) would time out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.guest import GuestSystemd
from tests.harness.guest_town import STANDIN_DIR, configure, new_town, tmux_panes

OWNER = "alice"
RIG = "gastown"  # bead prefix gt
UNITS = ("gastown-deacon-keeper.service", f"gastown-witness@{RIG}.service",
         f"gastown-refinery@{RIG}.service")
# the reasons the first service to see an [L] gt down can write in the mark
L_DOWN_REASONS = ("gt down holds daemon/shutdown.lock", "daemon/shutting-down)",
                  "daemon/daemon.lock was unlinked")


def sessions(dialect: str) -> tuple[str, ...]:
    if dialect == "L":
        return ("hq-deacon", "gt-witness", "gt-refinery")
    return ("hq-deacon", f"gt-{RIG}-witness", f"gt-{RIG}-refinery")


def l_socket(town: str) -> str:
    """§3.0 by hand (the town path has no symlinks): base + first 6 hex of SHA-256."""
    return f"gt-{hashlib.sha256(town.encode()).hexdigest()[:6]}"


@pytest.fixture(scope="module", params=["J", "L"])
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def guest(deb_path: Path, dialect: str) -> Iterator[GuestSystemd]:
    """One booted guest per dialect (the conftest's, parametrized by ``dialect``)."""
    with GuestSystemd() as booted:  # deb_path skips where no guest can run
        booted.install_deb(deb_path)
        yield booted


@pytest.fixture(scope="module")
def town(guest: GuestSystemd, dialect: str) -> Iterator[str]:
    path = new_town(guest, OWNER, dialect=dialect)
    configure(guest, OWNER, {"GT_TOWN_ROOT": path,
                             "GT_AGENT_COMMAND": f"{STANDIN_DIR}/agent",
                             "GT_DEGRADED": "true", "GT_INTERVAL": "1"})
    guest.write_file(f"{path}/.standin/gt.down-grace", "1", owner=OWNER)
    if dialect == "L":  # the Deacon's restart backoff of §6.10, 1 s here (30 s by default)
        daemon_json = f"{path}/mayor/daemon.json"
        data = json.loads(guest.read_file(daemon_json))
        data["patrols"]["restart_tracker"] = {"initial_backoff": 1_000_000_000}
        guest.write_file(daemon_json, json.dumps(data, indent=2), owner=OWNER)
    guest.systemctl("enable", "--now", "gastown.target", *UNITS)
    yield path
    guest.systemctl("stop", "gastown.target", check=False)


def _panes(guest: GuestSystemd, town: str, dialect: str) -> dict[str, tuple[int, str]]:
    """The town's panes: [J] the owner's default server, [L] the town's own socket."""
    return tmux_panes(guest, OWNER, None if dialect == "J" else l_socket(town))


def _gt(guest: GuestSystemd, town: str, *args: str) -> tuple[int, str]:
    result = guest.run(["sh", "-c", 'cd "$1" && shift && exec /usr/local/bin/gt "$@"', "gt",
                        town, *args], user=OWNER, check=False, timeout=120)
    return result.returncode, result.stdout + result.stderr


def _up(guest: GuestSystemd, town: str, dialect: str) -> dict[str, int]:
    panes = _panes(guest, town, dialect)
    if all(s in panes and panes[s][1] == "claude" for s in sessions(dialect)):
        return {s: panes[s][0] for s in sessions(dialect)}
    return {}


def _mark(guest: GuestSystemd, town: str) -> dict[str, str] | None:
    result = guest.run(["cat", f"{town}/daemon/units/town-down.json"], check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def _beats(guest: GuestSystemd, town: str) -> int:
    state = json.loads(guest.read_file(f"{town}/daemon/state.json"))
    return int(state["heartbeat_count"])


_LOCK_PROBE = """
import fcntl, os, sys
try:
    fd = os.open(sys.argv[1], os.O_RDONLY)
except FileNotFoundError:
    sys.exit(3)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    pass
else:
    sys.exit(4)  # nobody holds it
fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # raises when held exclusively
"""


def _lock_held_shared(guest: GuestSystemd, town: str) -> bool:
    """daemon/daemon.lock exists and is held, shared only (the services' lock)."""
    probe = guest.run(["python3", "-c", _LOCK_PROBE, f"{town}/daemon/daemon.lock"],
                      check=False)
    return probe.returncode == 0


def _stays_down(guest: GuestSystemd, town: str, dialect: str, passes: int = 5) -> None:
    """The keepers run ``passes`` more passes (1 s apart) and start nothing meanwhile."""
    start = _beats(guest, town)

    def done() -> bool:
        running = set(_panes(guest, town, dialect)) & set(sessions(dialect))
        assert not running, f"restarted while the town is down: {running}"
        return _beats(guest, town) >= start + passes
    guest.wait_for(done, timeout=60, what=f"{passes} more passes, nothing restarted")


def _down(guest: GuestSystemd, town: str, dialect: str) -> None:
    guest.wait_for(lambda: _up(guest, town, dialect), timeout=90,
                   what="deacon, witness, refinery")
    code, out = _gt(guest, town, "down")
    assert code == 0, out
    assert not set(_panes(guest, town, dialect)) & set(sessions(dialect))
    mark = _mark(guest, town)
    assert mark is not None, out
    if dialect == "L":
        # [L] gt down unlinks the lock held without daemon.pid (§6.11); re-taken by us
        assert "✓ Daemon stopped" in out, out
        assert any(r in mark["reason"] for r in L_DOWN_REASONS), mark
        guest.wait_for(lambda: _lock_held_shared(guest, town), timeout=30,
                       what="the services holding a shared lock on the new daemon.lock")
    else:
        assert "gt down" in mark["reason"], mark
    _stays_down(guest, town, dialect)
    status = guest.show(UNITS[0], "StatusText")["StatusText"]
    assert status.startswith("town down since "), status
    assert "systemctl start gastown.target" in status


def test_gt_down_then_systemctl_start_target_resumes_every_time(
        guest: GuestSystemd, town: str, dialect: str) -> None:
    for round_ in (1, 2):  # the oneshot runs again on every start of the target
        _down(guest, town, dialect)
        guest.systemctl("start", "gastown.target")
        guest.wait_for(lambda: _mark(guest, town) is None, timeout=30,
                       what=f"mark cleared by gastown-resume.service (round {round_})")
        guest.wait_for(lambda: _up(guest, town, dialect), timeout=90,
                       what="agents started again")
    log = guest.journal("-u", "gastown-resume.service", "-o", "cat")
    assert log.count("town resumed (it was down since ") == 2, log
    for unit in UNITS:
        assert guest.show(unit, "ActiveState")["ActiveState"] == "active"
        assert guest.show(unit, "NRestarts")["NRestarts"] == "0"
    keeper_log = guest.journal("-u", UNITS[0], "-o", "cat")
    assert "gt down holds daemon/shutdown.lock: not acting while it runs" in keeper_log
    assert "Traceback" not in keeper_log
    if dialect == "L":
        assert "took a shared lock on the new file again" in keeper_log, keeper_log


def test_gt_down_then_gt_up_resumes_without_a_second_daemon(
        guest: GuestSystemd, town: str, dialect: str) -> None:
    _down(guest, town, dialect)
    code, out = _gt(guest, town, "up")
    if dialect == "L":  # [L]: the held lock is the truth, so gt up starts no daemon
        assert code == 0 and "✓ Daemon: running (PID unknown)" in out, out
    else:  # [J]: gt up's `gt daemon run` loses our lock; gt up starts the agents itself
        assert code == 1 and "lock held by another process" in out, out
    started = guest.wait_for(lambda: _up(guest, town, dialect), timeout=60,
                             what="gt up's agents")
    guest.wait_for(lambda: _mark(guest, town) is None, timeout=60,
                   what="mark cleared on gt up's Deacon")
    daemons = guest.run(["pgrep", "-f", "gt daemon run"], check=False)
    assert daemons.returncode == 1, daemons.stdout
    assert _lock_held_shared(guest, town)  # ours, nobody holds it exclusively
    before = _beats(guest, town)
    guest.wait_for(lambda: _beats(guest, town) >= before + 3, timeout=30, what="passes")
    assert _up(guest, town, dialect) == started  # gt up's agents kept, not replaced
    code, status = _gt(guest, town, "daemon", "status")
    if dialect == "L":
        lines = status.splitlines()
        assert lines[:2] == ["● Daemon is running (PID 0)", f"  Town: {town}"], status
        assert lines[2].startswith("  Started: "), status
    else:
        assert status.startswith("○ Daemon is not running"), status
    for unit in UNITS:
        assert guest.show(unit, "ActiveState")["ActiveState"] == "active"
    assert "the town is up again, resuming" in guest.journal("-u", "gastown-*", "-o", "cat")


def test_gt_down_and_gt_up_at_once_leave_our_lock_in_place(
        guest: GuestSystemd, town: str, dialect: str) -> None:
    """``gt down && gt up``: in [L] gt down unlinks daemon.lock at its end, and gt up,
    right after, would start a real ``gt daemon run`` on a new file unless the services
    re-took the lock at once (they are woken by the unlink, not by their interval)."""
    guest.wait_for(lambda: _up(guest, town, dialect), timeout=90,
                   what="deacon, witness, refinery")
    result = guest.run(["sh", "-c", 'cd "$1" && /usr/local/bin/gt down && '
                        "exec /usr/local/bin/gt up", "gt", town], user=OWNER, check=False,
                       timeout=180)
    out = result.stdout + result.stderr
    if dialect == "L":
        assert "✓ Daemon stopped" in out and "✓ Daemon: running (PID unknown)" in out, out
        assert result.returncode == 0, out
    else:
        assert "lock held by another process" in out, out
    daemons = guest.run(["pgrep", "-f", "gt daemon run"], check=False)
    assert daemons.returncode == 1, daemons.stdout
    assert _lock_held_shared(guest, town)
    guest.wait_for(lambda: _up(guest, town, dialect), timeout=60, what="gt up's agents")
    guest.wait_for(lambda: _mark(guest, town) is None, timeout=60,
                   what="mark cleared on gt up's Deacon")
    for unit in UNITS:
        assert guest.show(unit, "ActiveState")["ActiveState"] == "active", unit
        assert guest.show(unit, "NRestarts")["NRestarts"] == "0", unit
