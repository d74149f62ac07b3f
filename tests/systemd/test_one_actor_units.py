"""One actor per agent (design rule 9) under systemd: a Witness shutdown is not undone.

The Witness carries out ``LIFECYCLE:Shutdown nux``; the kill closes the session, the tmux
hook wakes ``gastown-polecat-health.path`` within milliseconds, and the sweep it starts
finds the polecat either locked by the Witness (still cleaning up) or marked as shut down:
it must not restart it, mail ``CRASHED_POLECAT`` or report a crash.
"""

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

OWNER = "erin"
RIG = "gastown"
POLECAT = "nux"
SESSION = f"gt-{RIG}-{POLECAT}"
WITNESS_UNIT = f"gastown-witness@{RIG}.service"
HEALTH = "gastown-polecat-health.service"
HEALTH_PATH = "gastown-polecat-health.path"


@pytest.fixture(scope="module")
def town(guest: GuestSystemd) -> Iterator[str]:
    path = new_town(guest, OWNER, rigs={RIG: "gt"})
    add_polecat_with_work(guest, OWNER, path, RIG, POLECAT)
    configure(guest, OWNER, {"GT_TOWN_ROOT": path,
                             "GT_AGENT_COMMAND": f"{STANDIN_DIR}/agent",
                             "GT_RESTART_BACKOFF": "0"})
    guest.systemctl("enable", "--now", WITNESS_UNIT)
    yield path
    guest.systemctl("stop", "gastown.target", HEALTH_PATH, check=False)


def _agent_pid(guest: GuestSystemd, session: str) -> int | None:
    pane = tmux_panes(guest, OWNER).get(session)
    return pane[0] if pane and pane[1] == "claude" else None


def _gt(guest: GuestSystemd, town: str, *args: str) -> str:
    """``gt ARGS`` as the owner, in the town (as the services run it)."""
    return guest.run(["sh", "-c", 'cd "$1" && shift && exec /usr/local/bin/gt "$@"', "gt",
                      town, *args], user=OWNER).stdout


def _inbox(guest: GuestSystemd, town: str) -> list[dict]:
    out = _gt(guest, town, "mail", "inbox", "--identity", f"{RIG}/witness", "--json")
    return json.loads(out) or []


def _entries(guest: GuestSystemd, unit: str, since_us: int) -> list[tuple[int, str]]:
    """(monotonic µs, message) of ``unit``'s journal entries after ``since_us``.

    The guest has no time namespace: journald's monotonic clock is the host's."""
    entries = []
    for line in guest.journal("-u", unit, "-o", "json").splitlines():
        entry = json.loads(line)
        stamp, message = int(entry["__MONOTONIC_TIMESTAMP"]), entry.get("MESSAGE")
        if stamp > since_us and isinstance(message, str):
            entries.append((stamp, message))
    return entries


def _sweeps_settled(guest: GuestSystemd, since_us: int) -> dict[str, str] | None:
    """The sweep state once a sweep started after ``since_us`` has finished and no other
    runs or is pending; None before that."""
    shown = guest.show(HEALTH, "ActiveState", "Result", "ExecMainStartTimestampMonotonic",
                       "ExecMainExitTimestampMonotonic", "ExecMainStatus")
    start = int(shown["ExecMainStartTimestampMonotonic"] or 0)
    exited = int(shown["ExecMainExitTimestampMonotonic"] or 0)
    if shown["ActiveState"] not in ("inactive", "failed") or start <= since_us \
            or exited < start:
        return None
    if guest.show(HEALTH_PATH, "SubState")["SubState"] != "waiting":
        return None  # triggered again (a later event): not settled yet
    return shown


def test_witness_shutdown_is_not_undone_by_the_event_driven_sweep(
        guest: GuestSystemd, town: str) -> None:
    worktree = f"{town}/{RIG}/polecats/{POLECAT}"
    marker = f"{town}/daemon/shutdowns/{SESSION}.json"
    guest.wait_for(lambda: _agent_pid(guest, f"gt-{RIG}-witness"), timeout=90,
                   what="witness session running the agent")
    # The polecat, started by hand before any sweep can see it dead (a sweep would restart
    # it, log CRASH DETECTED and mail ORPHANED_WORK to this witness).
    guest.run(["tmux", "-N", "new-session", "-d", "-s", SESSION, "-c",
               f"{worktree}/{RIG}", f"{STANDIN_DIR}/agent"], user=OWNER)
    pid = guest.wait_for(lambda: _agent_pid(guest, SESSION), timeout=60,
                         what="polecat running the agent")
    # The event path only: the safety-net timer stays off, so every sweep below was
    # started by a tmux event (or explicitly).
    guest.systemctl("enable", "--now", HEALTH_PATH)
    guest.systemctl("stop", "gastown-polecat-health.timer")
    assert guest.show(HEALTH_PATH, "ActiveState")["ActiveState"] == "active"
    hooks = guest.run(["tmux", "-N", "show-hooks", "-g"], user=OWNER).stdout
    assert "session-closed" in hooks and "/run/gastown-tmux/events" in hooks
    guest.wait_for(lambda: guest.show(HEALTH, "ActiveState")["ActiveState"]
                   in ("inactive", "failed"), timeout=60, what="no sweep running")
    assert _agent_pid(guest, SESSION) == pid
    assert _inbox(guest, town) == []
    guest.wait_for(lambda: guest.show(WITNESS_UNIT, "ActiveState")["ActiveState"] == "active",
                   timeout=30, what="witness unit active")
    witness_pid = guest.show(WITNESS_UNIT, "MainPID")["MainPID"]

    since_us = time.monotonic_ns() // 1000
    mid = _gt(guest, town, "standin", "seed-mail", "--to", f"{RIG}/witness", "--from",
              "mayor/", "-s", f"LIFECYCLE:Shutdown {POLECAT}", "-m",
              f"Reason: work_reassigned\nRequestedBy: mayor\nPolecat: {POLECAT}").strip()
    assert [m["id"] for m in _inbox(guest, town)] == [mid]
    reloaded = time.monotonic()
    guest.systemctl("reload", WITNESS_UNIT)
    guest.wait_for(lambda: SESSION not in tmux_panes(guest, OWNER), timeout=30,
                   interval=0.05, what=f"{SESSION} stopped by the witness")
    gone = time.monotonic()
    guest.wait_for(lambda: _inbox(guest, town) == [], timeout=30, interval=0.05,
                   what="shutdown request acknowledged (deleted from the witness inbox)")
    acked = time.monotonic()
    settled = guest.wait_for(lambda: _sweeps_settled(guest, since_us), timeout=60,
                             interval=0.1, what="the event-driven sweep(s) finished")
    swept = time.monotonic()

    health = _entries(guest, HEALTH, since_us)
    health_text = "\n".join(m for _, m in health)
    witness = _entries(guest, WITNESS_UNIT, since_us)
    witness_text = "\n".join(m for _, m in witness)
    starts = [t for t, m in health if m.startswith("polecat-health started")]
    assert starts, f"no sweep after the kill:\n{health_text}"
    assert settled["ActiveState"] == "inactive", (settled, health_text)

    # One more sweep, explicitly: still nothing to bring back.
    guest.systemctl("start", HEALTH)
    final = guest.show(HEALTH, "ActiveState", "Result", "ExecMainStatus")
    assert guest.systemctl("is-failed", HEALTH, check=False).stdout.strip() != "failed", final
    assert (final["ActiveState"], final["Result"]) == ("inactive", "success"), final

    assert SESSION not in tmux_panes(guest, OWNER)
    assert guest.run(["kill", "-0", str(pid)], check=False).returncode != 0
    assert guest.run(["test", "-e", worktree], check=False).returncode != 0, \
        f"{worktree} still exists"
    branches = guest.run(["git", "-C", f"{town}/{RIG}/mayor/rig", "branch", "--list",
                          f"polecat/{POLECAT}"], user=OWNER).stdout
    assert branches.strip() == "", f"merged branch not deleted: {branches!r}"
    assert _inbox(guest, town) == []
    mark = json.loads(guest.read_file(marker))
    assert (mark["session"], mark["by"], mark["request"]) == \
        (SESSION, f"{RIG}/witness", mid), mark
    assert witness_text.count(f"request {mid} acknowledged") == 1, witness_text
    assert f"stopped {SESSION} for its shutdown request {mid}" in witness_text, witness_text
    full_health = guest.journal("-u", HEALTH, "-o", "cat")
    for bad in ("CRASH DETECTED", "CRASHED_POLECAT", f"restarted {SESSION}", "Traceback"):
        assert bad not in full_health, full_health[-3000:]
    assert "Traceback" not in guest.journal("-u", WITNESS_UNIT, "-o", "cat")
    shown = guest.show(WITNESS_UNIT, "ActiveState", "MainPID")
    assert (shown["ActiveState"], shown["MainPID"]) == ("active", witness_pid), shown
    assert _agent_pid(guest, f"gt-{RIG}-witness")

    # Timings, for the report (journal stamps are on the same monotonic clock).
    stopped = next(t for t, m in witness if m.startswith(f"stopped {SESSION}"))
    done = next(t for t, m in witness if f"request {mid} acknowledged" in m)
    print(f"\nreload -> session gone (polled) {gone - reloaded:.3f}s, "
          f"-> inbox empty (polled) {acked - reloaded:.3f}s, "
          f"-> sweeps settled (polled) {swept - reloaded:.3f}s")
    print(f"witness: 'stopped' logged {stopped / 1e6 - reloaded:.3f}s after the reload, "
          f"acknowledged {(done - stopped) / 1e6:.3f}s after 'stopped'")
    print(f"sweeps started after the seed: {len(starts)}, first "
          f"{(starts[0] - stopped) / 1e6:+.3f}s from 'stopped'; last exit "
          f"{(int(settled['ExecMainExitTimestampMonotonic']) - stopped) / 1e6:+.3f}s")
    print("polecat-health journal since the seed:\n  " + "\n  ".join(
        f"{(t - stopped) / 1e6:+.3f}s {m}" for t, m in health))
