"""Crash recovery through the event path: tmux hook -> .path unit -> oneshot sweep."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.harness.guest import GuestSystemd
from tests.harness.guest_town import (
    STANDIN_DIR,
    add_polecat_with_work,
    configure,
    new_town,
    tmux_panes,
)

OWNER = "carol"
RIG = "gastown"
SESSION = f"gt-{RIG}-nux"

@pytest.fixture(scope="module")
def town(guest: GuestSystemd) -> Iterator[str]:
    path = new_town(guest, OWNER, rigs={RIG: "gt"})
    add_polecat_with_work(guest, OWNER, path, RIG, "nux")
    configure(guest, OWNER, {"GT_TOWN_ROOT": path,
                             "GT_AGENT_COMMAND": f"{STANDIN_DIR}/agent",
                             "GT_RESTART_BACKOFF": "0"})
    # The event path only: the safety-net timer stays off in this module.
    guest.systemctl("enable", "--now", "gastown-polecat-health.path")
    guest.systemctl("stop", "gastown-polecat-health.timer")
    yield path
    guest.systemctl("stop", "gastown.target", "gastown-polecat-health.path", check=False)


def _agent_pid(guest: GuestSystemd) -> int | None:
    pane = tmux_panes(guest, OWNER).get(SESSION)
    return pane[0] if pane and pane[1] == "claude" else None


def test_event_path_restarts_a_killed_polecat_within_seconds(guest: GuestSystemd,
                                                             town: str) -> None:
    assert guest.systemctl("is-active", "gastown-tmux.service").stdout.strip() == "active"
    assert guest.systemctl("is-active", "gastown-polecat-health.timer",
                           check=False).stdout.strip() == "inactive"
    hooks = guest.run(["tmux", "-N", "show-hooks", "-g"], user=OWNER).stdout
    assert "session-closed[77]" in hooks and "/run/gastown-tmux/events" in hooks
    # Start the polecat by hand (a sweep may have beaten us to it: it has hooked work).
    guest.run(["tmux", "-N", "new-session", "-d", "-s", SESSION, "-c",
               f"{town}/{RIG}/polecats/nux/{RIG}", f"{STANDIN_DIR}/agent"], user=OWNER,
              check=False)
    pid = guest.wait_for(lambda: _agent_pid(guest), timeout=60, what="polecat running")
    timings = []
    for _ in range(3):
        killed = time.monotonic()
        guest.run(["kill", "-9", str(pid)])
        pid = guest.wait_for(lambda old=pid: (p := _agent_pid(guest)) and p != old and p,
                             timeout=60, interval=0.05, what="polecat restarted by the event")
        timings.append(time.monotonic() - killed)
    print(f"\ncrash-to-restart through the event path: "
          f"{', '.join(f'{t:.2f}s' for t in timings)}")
    record_path = f"{town}/{RIG}/polecats/nux/{RIG}/.agent/record.json"
    record = guest.wait_for(lambda: (r := json.loads(guest.read_file(record_path)))
                            and r["pid"] == pid and r, timeout=30, what="the new agent's record")
    assert record["env"]["GT_POLECAT"] == "nux" and record["env"]["GT_ROLE"] == "polecat"
    log = guest.journal("-u", "gastown-polecat-health.service", "-o", "cat")
    assert log.count("CRASH DETECTED: polecat gastown/nux") == 3
    assert "Traceback" not in log
    by_role = guest.journal("GT_ROLE=polecat", "-o", "cat")
    assert "restarted gt-gastown-nux" in by_role


def test_a_polecat_in_backoff_is_restarted_when_the_backoff_ends(guest: GuestSystemd,
                                                                 town: str) -> None:
    """Killed again during its restart backoff, the polecat is back when the backoff
    ends: the sweep the .path unit started (``$TRIGGER_UNIT``) stays for it, with the
    timer off; and the hooks' pending marker is taken (the sandbox lets the sweep)."""
    conf = guest.read_file("/etc/gastown/gastown.conf")
    guest.write_file("/etc/gastown/gastown.conf",
                     conf.replace("GT_RESTART_BACKOFF=0\n", "GT_RESTART_BACKOFF=4\n"))
    try:
        # The next sweep reads the new backoff (a running one keeps what it read).
        guest.wait_for(lambda: guest.show("gastown-polecat-health.service", "ActiveState")
                       ["ActiveState"] != "activating", timeout=60, what="the sweep to end")
        guest.run(["gastown-units", "clear-backoff", f"{RIG}/nux"], user=OWNER, check=False)
        pid = guest.wait_for(lambda: _agent_pid(guest), timeout=60, what="polecat running")
        guest.run(["kill", "-9", str(pid)])
        pid = guest.wait_for(lambda old=pid: (p := _agent_pid(guest)) and p != old and p,
                             timeout=60, interval=0.05, what="the first restart")
        killed = time.monotonic()
        guest.run(["kill", "-9", str(pid)])
        pid = guest.wait_for(lambda old=pid: (p := _agent_pid(guest)) and p != old and p,
                             timeout=60, interval=0.05, what="the restart at backoff end")
        waited = time.monotonic() - killed
        print(f"\nkilled in backoff -> running again: {waited:.2f}s (backoff 4 s)")
        log = guest.journal("-u", "gastown-polecat-health.service", "-o", "cat")
        assert "restart backoff ends in" in log and "waiting for it" in log, log[-4000:]
        assert "cannot remove" not in log and "Traceback" not in log
        assert guest.run(["test", "-e", "/run/gastown-tmux/events.pending"],
                         check=False).returncode == 1
        assert waited < 30  # long before the timer's minute (which is off anyway)
    finally:
        guest.write_file("/etc/gastown/gastown.conf", conf)
