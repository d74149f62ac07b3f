"""gastown-lifecycle-mail.service: reload runs a pass at once; a hanging gt is survived."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.harness.guest import GuestSystemd
from tests.harness.guest_town import (
    STANDIN_DIR,
    clone_rig_repo,
    configure,
    new_town,
    tmux_panes,
)

OWNER = "dave"
RIG = "gastown"
UNIT = "gastown-lifecycle-mail.service"
WITNESS = f"gt-{RIG}-witness"
REFINERY = f"gt-{RIG}-refinery"
HANG = "sleep 600; git-upload-pack"  # remote.origin.uploadpack: every fetch hangs


@pytest.fixture(scope="module")
def town(guest: GuestSystemd) -> Iterator[str]:
    path = new_town(guest, OWNER, rigs={RIG: "gt"})
    configure(guest, OWNER, {"GT_TOWN_ROOT": path,
                             "GT_AGENT_COMMAND": f"{STANDIN_DIR}/agent",
                             "GT_LIFECYCLE_INTERVAL": "1h",  # only reload triggers a pass
                             "GT_GT_TIMEOUT": "2",
                             "GT_GIT_TIMEOUT": "3"})  # < half of WatchdogSec=8s
    guest.write_file(f"/etc/systemd/system/{UNIT}.d/test.conf", "[Service]\nWatchdogSec=8s\n")
    guest.systemctl("daemon-reload")
    guest.systemctl("enable", "--now", f"gastown-witness@{RIG}", UNIT)
    yield path
    guest.systemctl("stop", "gastown.target", check=False)


def _agent_pane(guest: GuestSystemd, session: str) -> int | None:
    pane = tmux_panes(guest, OWNER).get(session)
    return pane[0] if pane and pane[1] == "claude" else None


def _witness(guest: GuestSystemd) -> int | None:
    return _agent_pane(guest, WITNESS)


def _hang_leftovers(guest: GuestSystemd) -> str:
    """The owner's processes of the hanging fetch (sleep, upload-pack, git fetch), if any."""
    return guest.run(["pgrep", "-u", OWNER, "-a", "-f", "sleep 600|git-upload-pack|git.* fetch"],
                     check=False).stdout.strip()


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


def test_git_hanging_in_pre_sync_times_out_without_the_watchdog_firing(
        guest: GuestSystemd, town: str) -> None:
    clone = clone_rig_repo(guest, OWNER, town, RIG, "refinery/rig")
    guest.run(["git", "-C", clone, "config", "remote.origin.uploadpack", HANG], user=OWNER)
    # Precondition: real git really hangs on a fetch from this clone.
    hung = guest.run(["timeout", "2", "git", "-C", clone, "fetch", "origin"], user=OWNER,
                     check=False)
    assert hung.returncode == 124, f"git fetch did not hang: {hung!r}"
    guest.wait_for(lambda: not _hang_leftovers(guest), timeout=10,
                   what="no process left of the hand-made hang")
    assert _agent_pane(guest, REFINERY) is None
    guest.wait_for(lambda: guest.show(UNIT, "ActiveState")["ActiveState"] == "active",
                   timeout=30, what="lifecycle-mail active")
    before = guest.show(UNIT, "MainPID", "NRestarts")
    journal = guest.journal("-u", UNIT, "-o", "cat")
    watchdogs = journal.count("Watchdog timeout")
    warnings = journal.count("no answer within 3s")

    guest.run(["sh", "-c", 'cd "$1" && /usr/local/bin/gt standin seed-mail --to deacon/ '
               '--from gastown/refinery -s "LIFECYCLE: gastown/refinery requesting cycle" '
               "-m '{\"action\":\"cycle\"}'", "seed", town], user=OWNER)
    started = time.monotonic()
    guest.systemctl("reload", UNIT)
    guest.wait_for(lambda: _agent_pane(guest, REFINERY), timeout=60,
                   what="refinery started after its pre-sync timed out")
    took = time.monotonic() - started
    running = time.monotonic()
    # The loop lives on after the pass: a watchdog ping later than the refinery's start.
    guest.wait_for(lambda: int(guest.show(UNIT, "WatchdogTimestampMonotonic")
                               ["WatchdogTimestampMonotonic"]) > running * 1e6,
                   timeout=30, what="a watchdog ping after the cycle")

    after = guest.show(UNIT, "ActiveState", "MainPID", "NRestarts")
    journal = guest.journal("-u", UNIT, "-o", "cat")
    assert (after["ActiveState"], after["MainPID"], after["NRestarts"]) == \
        ("active", before["MainPID"], before["NRestarts"]), journal[-3000:]
    assert journal.count("Watchdog timeout") == watchdogs, journal[-3000:]
    timeouts = [line for line in journal.splitlines() if "no answer within 3s" in line]
    assert len(timeouts) > warnings and "pre-sync of" in timeouts[-1], journal[-3000:]
    print(f"cycle took {took:.1f}s; {timeouts[-1]}")
    assert _inbox(guest, town) == []
    assert _hang_leftovers(guest) == ""


def test_hanging_gt_keeps_the_service_alive_while_its_loop_progresses(
        guest: GuestSystemd, town: str) -> None:
    restarts = guest.show(UNIT, "NRestarts")["NRestarts"]
    calls = f"{town}/.standin/calls.jsonl"

    def inbox_reads() -> int:  # the stand-in logs every call before it starts to hang
        return guest.read_file(calls).count('"inbox"')

    def told() -> int:
        return guest.journal("-u", UNIT, "-o", "cat").count("cannot read the deacon/ inbox")

    before = told()
    guest.run(["touch", f"{town}/.standin/gt.hang"], user=OWNER)
    try:
        seen = inbox_reads()

        def timeouts_after_reload() -> bool:  # each pass waits 2 s for gt: < 8 s watchdog
            guest.systemctl("reload", UNIT)
            return inbox_reads() >= seen + 3 and "no answer within 2s" in \
                guest.show(UNIT, "StatusText")["StatusText"]

        guest.wait_for(timeouts_after_reload, timeout=60, interval=1,
                       what="three timed-out inbox reads")
        shown = guest.show(UNIT, "ActiveState", "NRestarts")
        assert (shown["ActiveState"], shown["NRestarts"]) == ("active", restarts)
        assert told() == before + 1  # a condition that lasts is told once, not every pass
    finally:
        guest.run(["rm", "-f", f"{town}/.standin/gt.hang"])
    # Stopped (hung) loop: the watchdog restarts the service.
    main = guest.show(UNIT, "MainPID")["MainPID"]
    guest.run(["kill", "-STOP", main])
    guest.wait_for(lambda: guest.show(UNIT, "NRestarts")["NRestarts"] != restarts,
                   timeout=60, what="watchdog restart of the stopped loop")
    assert "Watchdog timeout" in guest.journal("-u", UNIT, "-o", "cat")
