"""gastown-lifecycle-mail.service: reload runs a pass at once; a hanging gt is survived."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.harness.guest import GuestSystemd
from tests.harness.guest_town import (
    STANDIN_DIR,
    configure,
    new_town,
    tmux_panes,
)

OWNER = "dave"
RIG = "gastown"
UNIT = "gastown-lifecycle-mail.service"
WITNESS = f"gt-{RIG}-witness"


@pytest.fixture(scope="module")
def town(guest: GuestSystemd) -> Iterator[str]:
    path = new_town(guest, OWNER, rigs={RIG: "gt"})
    configure(guest, OWNER, {"GT_TOWN_ROOT": path,
                             "GT_AGENT_COMMAND": f"{STANDIN_DIR}/agent",
                             "GT_LIFECYCLE_INTERVAL": "1h",  # only reload triggers a pass
                             "GT_GT_TIMEOUT": "2"})
    guest.write_file(f"/etc/systemd/system/{UNIT}.d/test.conf", "[Service]\nWatchdogSec=8s\n")
    guest.systemctl("daemon-reload")
    guest.systemctl("enable", "--now", f"gastown-witness@{RIG}", UNIT)
    yield path
    guest.systemctl("stop", "gastown.target", check=False)


def _witness(guest: GuestSystemd) -> int | None:
    pane = tmux_panes(guest, OWNER).get(WITNESS)
    return pane[0] if pane and pane[1] == "claude" else None


def _inbox(guest: GuestSystemd, town: str) -> list[dict]:
    out = guest.run(["sh", "-c", 'cd "$1" && /usr/local/bin/gt mail inbox --identity deacon/ '
                     "--json", "inbox", town], user=OWNER).stdout
    return json.loads(out) or []


def test_reload_processes_a_cycle_request_at_once(guest: GuestSystemd, town: str) -> None:
    first = guest.wait_for(lambda: _witness(guest), timeout=60, what="witness running")
    guest.wait_for(lambda: guest.show(UNIT, "ActiveState")["ActiveState"] == "active",
                   timeout=30, what="lifecycle-mail active")
    guest.run(["sh", "-c", 'cd "$1" && /usr/local/bin/gt standin seed-mail --to deacon/ '
               '--from gastown/witness -s "LIFECYCLE: gastown/witness requesting cycle" '
               "-m '{\"action\":\"cycle\"}'", "seed", town], user=OWNER)
    guest.systemctl("reload", UNIT)
    guest.wait_for(lambda: (p := _witness(guest)) and p != first, timeout=30,
                   what="witness cycled right after the reload")
    assert _inbox(guest, town) == []


def test_hanging_gt_keeps_the_service_alive_while_its_loop_progresses(
        guest: GuestSystemd, town: str) -> None:
    restarts = guest.show(UNIT, "NRestarts")["NRestarts"]
    guest.run(["touch", f"{town}/.standin/gt.hang"], user=OWNER)
    try:
        def timeouts_after_reload() -> bool:  # each pass waits 2 s for gt: < 8 s watchdog
            guest.systemctl("reload", UNIT)
            return guest.journal("-u", UNIT, "-o", "cat").count("no answer within 2s") >= 3

        guest.wait_for(timeouts_after_reload, timeout=60, interval=1,
                       what="three timed-out inbox reads")
        shown = guest.show(UNIT, "ActiveState", "NRestarts")
        assert (shown["ActiveState"], shown["NRestarts"]) == ("active", restarts)
    finally:
        guest.run(["rm", "-f", f"{town}/.standin/gt.hang"])
    # Stopped (hung) loop: the watchdog restarts the service.
    main = guest.show(UNIT, "MainPID")["MainPID"]
    guest.run(["kill", "-STOP", main])
    guest.wait_for(lambda: guest.show(UNIT, "NRestarts")["NRestarts"] != restarts,
                   timeout=60, what="watchdog restart of the stopped loop")
    assert "Watchdog timeout" in guest.journal("-u", UNIT, "-o", "cat")
