"""One actor per agent (design rule 9) under systemd: a Witness shutdown is not undone.

The Witness carries out ``LIFECYCLE:Shutdown <polecat>``; the kill closes the session, and
the tmux hook wakes the running ``gastown-polecat-health.service`` within milliseconds
(inotify on the hooks' markers: no process is started). The sweep it runs finds the
polecat either locked by the Witness (still cleaning up), marked as shut down, or gone: it
must not restart it, mail ``CRASHED_POLECAT`` or report a crash.

polecat-health runs here with ``--debug`` (a drop-in), so that each finished sweep leaves
a ``pass over: <status>`` entry in its journal: that entry is how this module sees a
sweep. ``systemctl reload`` asks it for a sweep at once. The safety-net timer stays off,
so every sweep seen here was woken by a tmux event, a town file polecat-health watches
(the shutdown markers) or the test; the ``.path`` unit only waits while the service runs.
The Witness of this rig runs git through a wrapper that can delay ``git worktree remove``
(to hold the polecat's lock open while a sweep runs).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
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
HEALTH_TIMER = "gastown-polecat-health.timer"
DEBUG_DROPIN = f"/etc/systemd/system/{HEALTH}.d/debug.conf"
PASS_OVER = "pass over:"  # logged (at DEBUG) when a sweep is over
QUIET = 1.0  # s without a new polecat-health journal entry: the sweeps have settled
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
    guest.write_file(DEBUG_DROPIN, "[Service]\nExecStart=\n"
                     "ExecStart=/usr/bin/gastown-units run polecat-health --debug\n")
    guest.systemctl("daemon-reload")
    try:
        guest.systemctl("enable", "--now", WITNESS_UNIT, HEALTH, HEALTH_PATH)
        guest.systemctl("stop", HEALTH_TIMER)
        _wait_settled(guest, 0, "polecat-health's first sweep")
        yield path
    finally:
        guest.systemctl("stop", "gastown.target", HEALTH_PATH, HEALTH, check=False)
        guest.run(["rm", "-f", DEBUG_DROPIN])
        guest.systemctl("daemon-reload")


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


def _now_us() -> int:
    """Monotonic µs, on the clock of journald's ``__MONOTONIC_TIMESTAMP``."""
    return time.monotonic_ns() // 1000


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


def _passes(entries: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The sweeps among polecat-health's journal entries (one ``pass over:`` each)."""
    return [(t, m) for t, m in entries if m.startswith(PASS_OVER)]


def _settled_probe(guest: GuestSystemd, since_us: int
                   ) -> Callable[[], dict[str, str] | None]:
    """A poll for :func:`_wait_settled`: the unit's state once a sweep ended after
    ``since_us``, its last journal entry is that ``pass over:`` (no wake-up or sweep came
    after it), the unit is active and its journal was unchanged for ``QUIET`` s; None
    before that."""
    last: dict[str, object] = {"entries": None, "at": 0.0}

    def probe() -> dict[str, str] | None:
        entries = _entries(guest, HEALTH, since_us)
        now = time.monotonic()
        if entries != last["entries"]:
            last.update(entries=entries, at=now)
            return None
        if now - float(last["at"]) < QUIET or not entries or \
                not entries[-1][1].startswith(PASS_OVER):
            return None
        shown = guest.show(HEALTH, "ActiveState", "SubState", "Result", "MainPID",
                           "NRestarts", "StatusText")
        return shown if shown["ActiveState"] == "active" else None

    return probe


def _wait_settled(guest: GuestSystemd, since_us: int, what: str) -> dict[str, str]:
    return guest.wait_for(_settled_probe(guest, since_us), timeout=60, interval=0.1,
                          what=f"{what}: polecat-health swept and is quiet")


def _start_polecat(guest: GuestSystemd, town: str, name: str) -> int:
    """A polecat with a worktree, hooked work and a running session; its pane PID.

    Started by hand while no sweep runs or is due: a sweep would restart it itself, log
    CRASH DETECTED and mail ORPHANED_WORK to the witness."""
    session = f"gt-{RIG}-{name}"
    _wait_settled(guest, 0, "no sweep running")
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
    health_before: dict[str, str]  # polecat-health's MainPID and NRestarts before the seed
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
                 f"{self.swept - self.reloaded:.3f}s (all polled from the host; settled "
                 f"includes {QUIET:g}s of quiet)",
                 f"[{name}] witness 'stopped' logged {stopped / 1e6 - self.reloaded:.3f}s "
                 f"after the reload; acknowledged {(done - stopped) / 1e6:.3f}s after it; "
                 f"{len(_passes(self.health))} sweep(s)",
                 f"[{name}] journal since the seed (relative to 'stopped'):"]
        both = sorted([(t, "health ", m) for t, m in self.health] +
                      [(t, "witness", m) for t, m in self.witness])
        lines += [f"  {(t - stopped) / 1e6:+.3f}s {who} {m}" for t, who, m in both]
        return "\n".join(lines)


def _shut_down(guest: GuestSystemd, town: str, name: str) -> Shutdown:
    """Seed ``LIFECYCLE:Shutdown <name>``, reload the witness, wait until the request is
    acknowledged and the sweeps the session's end (and the marker) woke have finished."""
    session = f"gt-{RIG}-{name}"
    assert _inbox(guest, town) == []
    guest.wait_for(lambda: guest.show(WITNESS_UNIT, "ActiveState")["ActiveState"] == "active",
                   timeout=30, what="witness unit active")
    before = guest.show(HEALTH, "ActiveState", "MainPID", "NRestarts")
    assert before["ActiveState"] == "active", before
    since_us = _now_us()
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
    settled = _wait_settled(guest, since_us, "the event-driven sweep(s)")
    swept = time.monotonic()
    return Shutdown(mid, since_us, before, reloaded, gone, acked, swept, settled,
                    _entries(guest, HEALTH, since_us), _entries(guest, WITNESS_UNIT, since_us))


def _assert_shut_down(guest: GuestSystemd, town: str, name: str, pid: int,
                      done: Shutdown) -> None:
    """Everything that holds after one shutdown, whatever the sweeps saw."""
    session = f"gt-{RIG}-{name}"
    health_text = "\n".join(m for _, m in done.health)
    witness_text = "\n".join(m for _, m in done.witness)
    stopped = done.at(f"stopped {session}")
    sweeps = [t for t, _ in _passes(done.health) if t > stopped]
    assert sweeps, f"no sweep after the kill:\n{health_text}"
    assert done.settled["ActiveState"] == "active", (done.settled, health_text)
    # Woken, not started: the same process swept, and systemd restarted nothing.
    assert (done.settled["MainPID"], done.settled["NRestarts"]) == \
        (done.health_before["MainPID"], done.health_before["NRestarts"]), \
        (done.health_before, done.settled)
    assert "polecat-health started" not in health_text, health_text
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


def _reload_sweep(guest: GuestSystemd) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """``systemctl reload`` (a sweep at once, in the running process); the unit's state
    once that sweep (and any it woke) is over, and its journal since the reload."""
    before = guest.show(HEALTH, "ActiveState", "MainPID", "NRestarts")
    assert before["ActiveState"] == "active", before
    since_us = _now_us()
    guest.systemctl("reload", HEALTH)
    final = _wait_settled(guest, since_us, "the sweep asked by systemctl reload")
    entries = _entries(guest, HEALTH, since_us)
    assert guest.systemctl("is-failed", HEALTH, check=False).stdout.strip() != "failed", final
    assert (final["MainPID"], final["NRestarts"]) == (before["MainPID"], before["NRestarts"]), \
        (before, final)
    assert final["StatusText"] == entries[-1][1].removeprefix(PASS_OVER).strip(), \
        (final, entries[-1])
    return final, entries


def _one_more_sweep(guest: GuestSystemd, town: str, session: str) -> dict[str, str]:
    """An explicit sweep (``systemctl reload``): nothing comes back."""
    final, entries = _reload_sweep(guest)
    text = "\n".join(m for _, m in entries)
    assert (final["ActiveState"], final["SubState"]) == ("active", "running"), final
    assert "CRASH DETECTED" not in text and "Traceback" not in text, text
    assert session not in tmux_panes(guest, OWNER)
    assert _inbox(guest, town) == []
    return final


def _witness_unharmed(guest: GuestSystemd, main_pid: str) -> None:
    shown = guest.show(WITNESS_UNIT, "ActiveState", "MainPID", "NRestarts")
    assert (shown["ActiveState"], shown["MainPID"], shown["NRestarts"]) == \
        ("active", main_pid, "0"), shown
    assert _agent_pid(guest, WITNESS)


def _one_process(guest: GuestSystemd) -> None:
    """polecat-health ran as one process all along: started once, never restarted."""
    full = guest.journal("-u", HEALTH, "-o", "cat")
    assert full.count("polecat-health started:") == 1, full[-3000:]
    shown = guest.show(HEALTH, "ActiveState", "NRestarts")
    assert (shown["ActiveState"], shown["NRestarts"]) == ("active", "0"), shown


def test_witness_shutdown_is_not_undone_by_the_event_driven_sweep(
        guest: GuestSystemd, town: str) -> None:
    guest.wait_for(lambda: _agent_pid(guest, WITNESS), timeout=90,
                   what="witness session running the agent")
    assert guest.show(HEALTH, "ActiveState")["ActiveState"] == "active"
    assert guest.show(HEALTH_PATH, "ActiveState")["ActiveState"] == "active"
    assert guest.systemctl("is-active", HEALTH_TIMER, check=False).stdout.strip() == "inactive"
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
    _one_process(guest)


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
    stopped, removed = done.at("stopped gt-gastown-toast"), done.at("removed worktree")
    first_exit = next(t for t, _ in _passes(done.health) if t > stopped)
    assert stopped < first_exit < removed, \
        "the sweep did not run inside the witness's cleanup window"
    assert any(stopped < t < removed and "gt-gastown-toast is being acted on by another "
               "service" in m for t, m in done.health), \
        "no sweep inside the cleanup window found the polecat locked"
    assert not _exists(guest, f"{town}/{RIG}/polecats/toast")
    _one_more_sweep(guest, town, "gt-gastown-toast")
    _witness_unharmed(guest, witness_pid)
    _one_process(guest)


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
    final = _one_more_sweep(guest, town, "gt-gastown-slit")
    print(f"[slit] explicit sweep: {final}")
    assert _exists(guest, f"{town}/daemon/shutdowns/gt-gastown-slit.json")
    _witness_unharmed(guest, witness_pid)
    _one_process(guest)

    # Control: without the marker the same sweep does treat slit as crashed (so the
    # marker, not the layout, kept it down above). The restart fails: no worktree.
    # Removing the marker may wake a sweep itself (polecat-health watches the markers).
    since_us = _now_us()
    cleared = guest.run(["gastown-units", "clear-backoff", "--town", town, "gastown/slit"],
                        user=OWNER).stdout
    assert "removed the shutdown marker" in cleared, cleared
    final, _ = _reload_sweep(guest)
    control = _entries(guest, HEALTH, since_us)
    health_text = "\n".join(m for _, m in control)
    print(f"[slit] control sweep(s) without the marker: {final}")
    print("\n".join(f"  {(t - since_us) / 1e6:+.3f}s {m}" for t, m in control
                    if not m.startswith("run: ")))
    assert "CRASH DETECTED: polecat gastown/slit" in health_text, health_text
    assert final["ActiveState"] == "active", final
