"""One actor per agent (design rule 9) under systemd: a Witness shutdown is not undone.

The Witness carries out ``LIFECYCLE:Shutdown <polecat>``; the kill closes the session, the
tmux hook wakes ``gastown-polecat-health.path`` within milliseconds, and the sweep it starts
finds the polecat either locked by the Witness (still cleaning up), marked as shut down, or
gone: it must not restart it, mail ``CRASHED_POLECAT`` or report a crash.

The safety-net timer stays off in this module, so every sweep seen here was started by a
tmux event or by the test. The Witness of this rig runs git through a wrapper that can
delay ``git worktree remove`` (to hold the polecat's lock open while a sweep runs).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

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
WITNESS = f"gt-{RIG}-witness"
WITNESS_UNIT = f"gastown-witness@{RIG}.service"
HEALTH = "gastown-polecat-health.service"
HEALTH_PATH = "gastown-polecat-health.path"
GIT_WRAPPER = "/usr/local/lib/gastown-test/git"
GIT_DELAY = "/run/gastown-test-worktree-remove-delay"  # seconds, read by the wrapper
_WRAPPER = f"""#!/bin/sh
# Test wrapper: sleeps before `git -C DIR worktree remove ...` while {GIT_DELAY} exists.
if [ "$3 $4" = "worktree remove" ] && [ -r {GIT_DELAY} ]; then
  sleep "$(cat {GIT_DELAY})"
fi
exec /usr/bin/git "$@"
"""


@pytest.fixture(scope="module")
def town(guest: GuestSystemd) -> Iterator[str]:
    path = new_town(guest, OWNER, rigs={RIG: "gt"})
    configure(guest, OWNER, {"GT_TOWN_ROOT": path,
                             "GT_AGENT_COMMAND": f"{STANDIN_DIR}/agent",
                             "GT_RESTART_BACKOFF": "0"})
    guest.write_file(GIT_WRAPPER, _WRAPPER, mode=0o755)
    guest.write_file(f"/etc/gastown/rigs/{RIG}.conf", f"GT_GIT_BIN={GIT_WRAPPER}\n")
    guest.systemctl("enable", "--now", WITNESS_UNIT, HEALTH_PATH)
    guest.systemctl("stop", "gastown-polecat-health.timer")
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


def _exists(guest: GuestSystemd, path: str) -> bool:
    return guest.run(["test", "-e", path], check=False).returncode == 0


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


def _sweep_idle(guest: GuestSystemd) -> bool:
    return guest.show(HEALTH, "ActiveState")["ActiveState"] in ("inactive", "failed") and \
        guest.show(HEALTH_PATH, "SubState")["SubState"] == "waiting"


def _sweeps_settled(guest: GuestSystemd, since_us: int) -> dict[str, str] | None:
    """The sweep's state once a sweep started after ``since_us`` has finished and no other
    runs or is pending; None before that."""
    shown = guest.show(HEALTH, "ActiveState", "Result", "ExecMainStartTimestampMonotonic",
                       "ExecMainExitTimestampMonotonic", "ExecMainStatus")
    start = int(shown["ExecMainStartTimestampMonotonic"] or 0)
    exited = int(shown["ExecMainExitTimestampMonotonic"] or 0)
    if start <= since_us or exited < start or not _sweep_idle(guest):
        return None
    return shown


def _start_polecat(guest: GuestSystemd, town: str, name: str) -> int:
    """A polecat with a worktree, hooked work and a running session; its pane PID.

    Started by hand while no sweep runs: a sweep would restart it itself, log CRASH
    DETECTED and mail ORPHANED_WORK to the witness."""
    session = f"gt-{RIG}-{name}"
    guest.wait_for(lambda: _sweep_idle(guest), timeout=60, what="no sweep running")
    tree = add_polecat_with_work(guest, OWNER, town, RIG, name)
    guest.run(["tmux", "-N", "new-session", "-d", "-s", session, "-c", tree,
               f"{STANDIN_DIR}/agent"], user=OWNER)
    return guest.wait_for(lambda: _agent_pid(guest, session), timeout=60,
                          what=f"{session} running the agent")


@dataclass
class Shutdown:
    """What one witness shutdown looked like."""

    mid: str
    since_us: int  # host/guest monotonic µs just before the request was seeded
    reloaded: float  # host monotonic s of the reload
    gone: float  # session seen gone (polled)
    acked: float  # inbox seen empty (polled)
    swept: float  # sweeps seen settled (polled)
    settled: dict[str, str]
    health: list[tuple[int, str]]  # polecat-health journal since the seed
    witness: list[tuple[int, str]]  # witness journal since the seed

    def at(self, text: str) -> int:
        """Monotonic µs of the first witness line containing ``text``."""
        return next(t for t, m in self.witness if text in m)

    def report(self, name: str) -> str:
        stopped = self.at(f"stopped gt-{RIG}-{name}")
        done = self.at(f"request {self.mid} acknowledged")
        lines = [f"\n[{name}] reload -> session gone {self.gone - self.reloaded:.3f}s, "
                 f"-> inbox empty {self.acked - self.reloaded:.3f}s, -> sweeps settled "
                 f"{self.swept - self.reloaded:.3f}s (all polled from the host)",
                 f"[{name}] witness 'stopped' logged {stopped / 1e6 - self.reloaded:.3f}s "
                 f"after the reload; acknowledged {(done - stopped) / 1e6:.3f}s after it",
                 f"[{name}] journal since the seed (relative to 'stopped'):"]
        both = sorted([(t, "health ", m) for t, m in self.health] +
                      [(t, "witness", m) for t, m in self.witness])
        lines += [f"  {(t - stopped) / 1e6:+.3f}s {who} {m}" for t, who, m in both]
        return "\n".join(lines)


def _shut_down(guest: GuestSystemd, town: str, name: str) -> Shutdown:
    """Seed ``LIFECYCLE:Shutdown <name>``, reload the witness, wait until the request is
    acknowledged and the sweeps the session's end triggered have finished."""
    session = f"gt-{RIG}-{name}"
    assert _inbox(guest, town) == []
    guest.wait_for(lambda: guest.show(WITNESS_UNIT, "ActiveState")["ActiveState"] == "active",
                   timeout=30, what="witness unit active")
    since_us = time.monotonic_ns() // 1000
    mid = _gt(guest, town, "standin", "seed-mail", "--to", f"{RIG}/witness", "--from",
              "mayor/", "-s", f"LIFECYCLE:Shutdown {name}", "-m",
              f"Reason: work_reassigned\nRequestedBy: mayor\nPolecat: {name}").strip()
    assert [m["id"] for m in _inbox(guest, town)] == [mid]
    reloaded = time.monotonic()
    guest.systemctl("reload", WITNESS_UNIT)
    guest.wait_for(lambda: session not in tmux_panes(guest, OWNER), timeout=30,
                   interval=0.05, what=f"{session} stopped by the witness")
    gone = time.monotonic()
    guest.wait_for(lambda: _inbox(guest, town) == [], timeout=60, interval=0.05,
                   what="shutdown request acknowledged (deleted from the witness inbox)")
    acked = time.monotonic()
    settled = guest.wait_for(lambda: _sweeps_settled(guest, since_us), timeout=60,
                             interval=0.1, what="the event-driven sweep(s) finished")
    swept = time.monotonic()
    return Shutdown(mid, since_us, reloaded, gone, acked, swept, settled,
                    _entries(guest, HEALTH, since_us), _entries(guest, WITNESS_UNIT, since_us))


def _assert_shut_down(guest: GuestSystemd, town: str, name: str, pid: int,
                      done: Shutdown) -> None:
    """Everything that holds after one shutdown, whatever the sweeps saw."""
    session = f"gt-{RIG}-{name}"
    health_text = "\n".join(m for _, m in done.health)
    witness_text = "\n".join(m for _, m in done.witness)
    sweeps = [t for t, m in done.health if m.startswith("polecat-health started")]
    assert sweeps, f"no sweep after the kill:\n{health_text}"
    assert done.settled["ActiveState"] == "inactive", (done.settled, health_text)
    assert session not in tmux_panes(guest, OWNER)
    assert guest.run(["kill", "-0", str(pid)], check=False).returncode != 0
    assert not _exists(guest, f"{town}/{RIG}/polecats/{name}/{RIG}")
    branches = guest.run(["git", "-C", f"{town}/{RIG}/mayor/rig", "branch", "--list",
                          f"polecat/{name}"], user=OWNER).stdout
    assert branches.strip() == "", f"merged branch not deleted: {branches!r}"
    assert _inbox(guest, town) == []  # acknowledged; no CRASHED_POLECAT/ORPHANED_WORK mail
    mark = json.loads(guest.read_file(f"{town}/daemon/shutdowns/{session}.json"))
    assert (mark["session"], mark["by"], mark["request"]) == \
        (session, f"{RIG}/witness", done.mid), mark
    assert witness_text.count(f"request {done.mid} acknowledged") == 1, witness_text
    assert f"stopped {session} for its shutdown request {done.mid}" in witness_text, \
        witness_text
    for bad in ("CRASH DETECTED", "CRASHED_POLECAT", f"restarted {session}",
                f"restart of {session}", "Traceback"):
        assert bad not in health_text, health_text
    assert "Traceback" not in witness_text and "not finished" not in witness_text, \
        witness_text


def _one_more_sweep(guest: GuestSystemd, town: str, session: str) -> dict[str, str]:
    """An explicit sweep (``systemctl start`` waits for the oneshot): nothing comes back."""
    guest.systemctl("start", HEALTH)
    final = guest.show(HEALTH, "ActiveState", "Result", "ExecMainStatus", "StatusText")
    assert guest.systemctl("is-failed", HEALTH, check=False).stdout.strip() != "failed", final
    assert (final["ActiveState"], final["Result"]) == ("inactive", "success"), final
    assert session not in tmux_panes(guest, OWNER)
    assert _inbox(guest, town) == []
    return final


def _witness_unharmed(guest: GuestSystemd, main_pid: str) -> None:
    shown = guest.show(WITNESS_UNIT, "ActiveState", "MainPID", "NRestarts")
    assert (shown["ActiveState"], shown["MainPID"], shown["NRestarts"]) == \
        ("active", main_pid, "0"), shown
    assert _agent_pid(guest, WITNESS)


def test_witness_shutdown_is_not_undone_by_the_event_driven_sweep(
        guest: GuestSystemd, town: str) -> None:
    guest.wait_for(lambda: _agent_pid(guest, WITNESS), timeout=90,
                   what="witness session running the agent")
    assert guest.show(HEALTH_PATH, "ActiveState")["ActiveState"] == "active"
    assert guest.systemctl("is-active", "gastown-polecat-health.timer",
                           check=False).stdout.strip() == "inactive"
    hooks = guest.run(["tmux", "-N", "show-hooks", "-g"], user=OWNER).stdout
    assert "session-closed" in hooks and "/run/gastown-tmux/events" in hooks
    pid = _start_polecat(guest, town, "nux")
    witness_pid = guest.show(WITNESS_UNIT, "MainPID")["MainPID"]

    done = _shut_down(guest, town, "nux")
    print(done.report("nux"))
    _assert_shut_down(guest, town, "nux", pid, done)
    assert not _exists(guest, f"{town}/{RIG}/polecats/nux")
    _one_more_sweep(guest, town, "gt-gastown-nux")
    full = guest.journal("-u", HEALTH, "-o", "cat")
    assert "CRASH DETECTED" not in full and "CRASHED_POLECAT" not in full, full[-3000:]
    _witness_unharmed(guest, witness_pid)


def test_a_sweep_during_the_cleanup_leaves_the_locked_polecat_alone(
        guest: GuestSystemd, town: str) -> None:
    """``git worktree remove`` takes 3 s: the event-driven sweep runs while the witness
    holds the polecat's lock and its worktree is still there."""
    pid = _start_polecat(guest, town, "toast")
    witness_pid = guest.show(WITNESS_UNIT, "MainPID")["MainPID"]
    guest.write_file(GIT_DELAY, "3\n")
    try:
        done = _shut_down(guest, town, "toast")
    finally:
        guest.run(["rm", "-f", GIT_DELAY])
    print(done.report("toast"))
    _assert_shut_down(guest, town, "toast", pid, done)
    removed = done.at("removed worktree")
    first_exit = next(t for t, m in done.health if "Deactivated successfully" in m)
    assert done.at("stopped gt-gastown-toast") < first_exit < removed, \
        "the sweep did not run inside the witness's cleanup window"
    assert not _exists(guest, f"{town}/{RIG}/polecats/toast")
    _one_more_sweep(guest, town, "gt-gastown-toast")
    _witness_unharmed(guest, witness_pid)


def test_the_shutdown_marker_keeps_the_polecat_down_after_the_witness(
        guest: GuestSystemd, town: str) -> None:
    """``polecats/slit/`` keeps a file beside the worktree, so the polecat is still on disk
    (and its work hooked) once the witness let go of it: only the marker keeps it down."""
    pid = _start_polecat(guest, town, "slit")
    base = f"{town}/{RIG}/polecats/slit"
    guest.write_file(f"{base}/NOTES.md", "kept beside the worktree\n", owner=OWNER)
    witness_pid = guest.show(WITNESS_UNIT, "MainPID")["MainPID"]
    done = _shut_down(guest, town, "slit")
    print(done.report("slit"))
    _assert_shut_down(guest, town, "slit", pid, done)
    assert _exists(guest, base)  # still a polecat in polecat-health's eyes
    since_us = time.monotonic_ns() // 1000
    final = _one_more_sweep(guest, town, "gt-gastown-slit")
    print(f"[slit] explicit sweep: {final}")
    health_text = "\n".join(m for _, m in _entries(guest, HEALTH, since_us))
    assert "CRASH DETECTED" not in health_text, health_text
    assert _exists(guest, f"{town}/daemon/shutdowns/gt-gastown-slit.json")
    _witness_unharmed(guest, witness_pid)

    # Control: without the marker the same sweep does treat slit as crashed (so the
    # marker, not the layout, kept it down above). The restart fails: no worktree.
    cleared = guest.run(["gastown-units", "clear-backoff", "--town", town, "gastown/slit"],
                        user=OWNER).stdout
    assert "removed the shutdown marker" in cleared, cleared
    since_us = time.monotonic_ns() // 1000
    guest.systemctl("start", HEALTH, check=False)
    health_text = "\n".join(m for _, m in _entries(guest, HEALTH, since_us))
    print(f"[slit] control sweep without the marker:\n{health_text}")
    assert "CRASH DETECTED: polecat gastown/slit" in health_text, health_text
    guest.systemctl("reset-failed", HEALTH, check=False)
