"""gastown-deacon-keeper.service under a real systemd, installed from the .deb."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.guest import GuestSystemd
from tests.harness.guest_town import (
    STANDIN_DIR,
    agent_record,
    configure,
    new_town,
    tmux_panes,
    unit_of,
)

UNIT = "gastown-deacon-keeper.service"
OWNER = "alice"


@pytest.fixture(scope="module")
def town(guest: GuestSystemd) -> Iterator[str]:
    path = new_town(guest, OWNER)
    configure(guest, OWNER, {
        "GT_TOWN_ROOT": path,
        "GT_AGENT_COMMAND": f"{STANDIN_DIR}/agent",
        "GT_INTERVAL": "2",
    })
    # Faster watchdog and restarts than the packaged defaults, so the ring stays quick.
    guest.write_file(f"/etc/systemd/system/{UNIT}.d/test.conf",
                     "[Service]\nWatchdogSec=6s\nRestartSec=1s\n")
    guest.systemctl("daemon-reload")
    guest.systemctl("enable", "--now", UNIT)
    yield path
    guest.systemctl("stop", UNIT, check=False)


def _deacon(guest: GuestSystemd) -> tuple[int, str] | None:
    return tmux_panes(guest, OWNER).get("hq-deacon")


def _wait_deacon(guest: GuestSystemd, what: str, differs_from: int | None = None) -> int:
    def probe() -> int | None:
        pane = _deacon(guest)
        if pane and pane[1] == "claude" and pane[0] != differs_from:
            return pane[0]
        return None
    return guest.wait_for(probe, timeout=60, what=what)


def _main_pid(guest: GuestSystemd) -> int:
    return int(guest.show(UNIT, "MainPID")["MainPID"])


def _restarts(guest: GuestSystemd) -> int:
    return int(guest.show(UNIT, "NRestarts")["NRestarts"])


def test_enable_now_brings_the_deacon_up(guest: GuestSystemd, town: str) -> None:
    pid = _wait_deacon(guest, "hq-deacon running the stand-in agent")
    state = guest.show(UNIT, "ActiveState", "SubState", "UnitFileState")
    assert (state["ActiveState"], state["UnitFileState"]) == ("active", "enabled")
    assert guest.systemctl("is-enabled", "gastown.target").stdout.strip() == "enabled"
    assert guest.systemctl("is-active", "gastown-tmux.service").stdout.strip() == "active"
    record = guest.wait_for(lambda: agent_record(guest, f"{town}/deacon"), timeout=30,
                            what="agent record")
    env = record["env"]
    assert (env["GT_ROLE"], env["BD_ACTOR"], env["GIT_AUTHOR_NAME"]) == ("deacon",) * 3
    assert env["GT_ROOT"] == town and env["USER"] == OWNER
    assert not any(k in env for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "INVOCATION_ID",
                                         "JOURNAL_STREAM"))
    # The agent lives in the tmux unit's cgroup, never in the supervisor's.
    assert unit_of(guest, pid) == "gastown-tmux.service"
    guest.wait_for(lambda: "hq-deacon running" in guest.show(UNIT, "StatusText")["StatusText"],
                   timeout=30, what="STATUS= line from sd_notify")


def test_a_killed_agent_is_replaced(guest: GuestSystemd, town: str) -> None:
    pid = _wait_deacon(guest, "deacon before the kill")
    guest.run(["kill", "-9", str(pid)])
    _wait_deacon(guest, "a new hq-deacon after kill -9 of the agent", differs_from=pid)


def test_kill_9_of_the_service_keeps_the_agent(guest: GuestSystemd, town: str) -> None:
    agent = _wait_deacon(guest, "deacon")
    before, main = _restarts(guest), _main_pid(guest)
    guest.run(["kill", "-9", str(main)])
    guest.wait_for(lambda: _restarts(guest) > before and
                   guest.show(UNIT, "ActiveState")["ActiveState"] == "active" and
                   _main_pid(guest) not in (0, main),
                   timeout=60, what="NRestarts to grow after kill -9")
    assert _deacon(guest)[0] == agent


def test_a_hung_service_is_killed_by_the_watchdog(guest: GuestSystemd, town: str) -> None:
    agent = _wait_deacon(guest, "deacon")
    before, main = _restarts(guest), _main_pid(guest)
    guest.run(["kill", "-STOP", str(main)])
    guest.wait_for(lambda: _restarts(guest) > before, timeout=90,
                   what="watchdog restart after SIGSTOP")
    guest.wait_for(lambda: "Watchdog timeout" in guest.journal("-u", UNIT, "-o", "cat"),
                   timeout=30, what="systemd's watchdog message in the journal")
    guest.wait_for(lambda: guest.show(UNIT, "ActiveState")["ActiveState"] == "active",
                   timeout=60, what="service active again")
    assert _deacon(guest)[0] == agent


def test_restart_and_stop_leave_the_agent_alive(guest: GuestSystemd, town: str) -> None:
    agent = _wait_deacon(guest, "deacon")
    guest.systemctl("restart", UNIT)
    assert guest.show(UNIT, "ActiveState")["ActiveState"] == "active"
    assert _deacon(guest)[0] == agent
    guest.systemctl("stop", UNIT)
    assert _deacon(guest)[0] == agent
    guest.systemctl("stop", "gastown.target")
    assert _deacon(guest)[0] == agent
    guest.systemctl("start", UNIT)
    assert _deacon(guest)[0] == agent


def test_journal_has_the_service_entries_by_role(guest: GuestSystemd, town: str) -> None:
    _wait_deacon(guest, "deacon")
    by_role = guest.journal("GT_ROLE=deacon", "-o", "cat")
    assert "deacon-keeper started" in by_role
    by_unit = guest.journal("_SYSTEMD_UNIT=gastown-deacon-keeper.service", "GT_ROLE=deacon",
                            "-o", "verbose")
    assert "SYSLOG_IDENTIFIER=gastown-deacon-keeper" in by_unit
    assert "Traceback" not in guest.journal("-u", UNIT, "-o", "cat")


def test_config_error_fails_once_without_a_restart_loop(guest: GuestSystemd,
                                                        town: str) -> None:
    conf = "/etc/gastown/gastown.conf"
    good = guest.read_file(conf)
    guest.write_file(conf, good.replace(f"GT_TOWN_ROOT={town}", "GT_TOWN_ROOT=/nonexistent"))
    try:
        guest.systemctl("restart", UNIT, check=False)
        # Restart=on-failure would show "activating (auto-restart)"; exit 78 must not.
        guest.wait_for(lambda: guest.show(UNIT, "ActiveState")["ActiveState"] == "failed",
                       timeout=30, what="unit failed on a config error")
        assert guest.show(UNIT, "ExecMainStatus")["ExecMainStatus"] == "78"
        log = guest.journal("-u", UNIT, "-o", "cat", "-n", "30")
        assert "town root /nonexistent does not exist" in log
        assert "Traceback" not in log
    finally:
        guest.write_file(conf, good)
        guest.systemctl("reset-failed", UNIT, check=False)
        guest.systemctl("start", UNIT)
    _wait_deacon(guest, "deacon after the config is fixed")
