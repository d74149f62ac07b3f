"""gastown-tmux.service under a real systemd: adopting the owner's tmux server, and event
wakes that survive a restart of the unit (issue 8 items 6 and 7).

The owner's own server is started in a scope of its own (``owner-login.scope``, standing in
for a login session) before the unit starts, as on a workstation. The supervisors' interval
is 300 s here, so an agent back within seconds was brought back by a tmux event, and the
tests run in order: adopt, stop/start while adopted, the adopted server exits (the unit
then owns a fresh one), restart of the unit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.harness.guest import GuestSystemd
from tests.harness.guest_town import STANDIN_DIR, configure, new_town, tmux_panes, unit_of

OWNER = "gwen"
TMUX = "gastown-tmux.service"
KEEPER = "gastown-deacon-keeper.service"
SCOPE = "owner-login.scope"
INTERVAL = 300  # seconds: far beyond every deadline below, so only events are fast


@pytest.fixture(scope="module")
def town(guest: GuestSystemd) -> Iterator[str]:
    path = new_town(guest, OWNER)
    configure(guest, OWNER, {"GT_TOWN_ROOT": path,
                             "GT_AGENT_COMMAND": f"{STANDIN_DIR}/agent",
                             "GT_INTERVAL": str(INTERVAL)})
    # The first unit with default dependencies pulls in systemd-tmpfiles-setup, which
    # empties /tmp: have that done before the owner's server puts its socket there.
    guest.systemctl("start", "sysinit.target")
    yield path
    guest.systemctl("stop", "gastown.target", TMUX, SCOPE, check=False)


def _owner_tmux(guest: GuestSystemd, *args: str, check: bool = True) -> str:
    return guest.run(["tmux", "-N", *args], user=OWNER, check=check).stdout


def _server_pid(guest: GuestSystemd) -> int | None:
    """PID of the server answering on the owner's default socket, or None."""
    out = _owner_tmux(guest, "display-message", "-p", "#{pid}", check=False).strip()
    return int(out) if out.isdigit() else None


def _state(guest: GuestSystemd, unit: str = TMUX) -> dict[str, str]:
    return guest.show(unit, "ActiveState", "SubState", "MainPID", "NRestarts", "StatusText",
                      "Result", "ExecMainStatus")


def _deacon(guest: GuestSystemd, differs_from: int | None = None) -> int | None:
    pane = tmux_panes(guest, OWNER).get("hq-deacon")
    if pane and pane[1] == "claude" and pane[0] != differs_from:
        return pane[0]
    return None


def _wait_deacon(guest: GuestSystemd, what: str, differs_from: int | None = None,
                 timeout: float = 60) -> int:
    return guest.wait_for(lambda: _deacon(guest, differs_from), timeout=timeout, what=what)


def _stays(check: Callable[[], object], what: str, seconds: float = 8.0) -> None:
    """``check`` holds at every look during ``seconds``: "stays" has no event to poll
    for, so this is a bounded observation window (not a synchronisation sleep)."""
    end = time.monotonic() + seconds
    while True:
        assert check(), what
        if time.monotonic() >= end:
            return
        time.sleep(0.5)


def _hooks(guest: GuestSystemd) -> str:
    """Global session and window hooks (pane-died is a window hook in tmux 3.3a)."""
    return _owner_tmux(guest, "show-hooks", "-g", check=False) + \
        _owner_tmux(guest, "show-hooks", "-gw", check=False)


def _owns_server(guest: GuestSystemd) -> int | None:
    """MainPID of the unit when it is the server answering on the socket, else None."""
    state = _state(guest)
    main = int(state["MainPID"])
    if state["ActiveState"] != "active" or not main or _server_pid(guest) != main:
        return None
    return main


def test_the_owners_running_server_is_adopted(guest: GuestSystemd, town: str) -> None:
    guest.run(["systemd-run", "--scope", f"--unit={SCOPE}", f"--uid={OWNER}", "--",
               "tmux", "new-session", "-d", "-s", "other", "sleep infinity"],
              env={"HOME": f"/home/{OWNER}", "USER": OWNER, "LOGNAME": OWNER})
    owner_server = guest.wait_for(lambda: _server_pid(guest), timeout=30,
                                  what="the owner's tmux server")
    assert unit_of(guest, owner_server) == SCOPE

    guest.systemctl("start", TMUX)
    state = guest.wait_for(
        lambda: (s := _state(guest))["ActiveState"] == "active" and
        f"adopted the tmux server PID {owner_server}" in s["StatusText"] and s,
        timeout=60, what="the tmux host active, adopting the owner's server")
    assert "not in this unit's cgroup" in state["StatusText"]
    main = int(state["MainPID"])
    assert main != owner_server and unit_of(guest, main) == TMUX
    guest.wait_for(lambda: "session-closed[77]" in _hooks(guest) and
                   "pane-died[77]" in _hooks(guest) and "/run/gastown-tmux/events" in
                   _hooks(guest), timeout=30, what="event hooks on the adopted server")
    _stays(lambda: (s := _state(guest))["ActiveState"] == "active" and
           s["NRestarts"] == "0" and s["MainPID"] == str(main) and
           _server_pid(guest) == owner_server,
           "the tmux host stays active, without restarts, on the adopted server")
    log = guest.journal("-u", TMUX, "-o", "cat")
    assert f"adopted the tmux server PID {owner_server}" in log
    assert "Traceback" not in log

    # The supervisors work on the adopted server; its agents live in the owner's scope.
    guest.systemctl("start", KEEPER)
    deacon = _wait_deacon(guest, "hq-deacon on the adopted server")
    assert unit_of(guest, deacon) == SCOPE
    guest.run(["kill", "-9", str(deacon)])
    # Within the deadline only the hooks set on the adopted server can wake the keeper.
    _wait_deacon(guest, "the Deacon back after kill -9 (an event wake)", differs_from=deacon,
                 timeout=30)


def test_stopping_the_host_leaves_the_adopted_server(guest: GuestSystemd, town: str
                                                    ) -> None:
    owner_server = _server_pid(guest)
    deacon = _wait_deacon(guest, "hq-deacon on the adopted server")
    guest.systemctl("stop", TMUX)
    state = _state(guest)
    assert (state["ActiveState"], state["Result"], state["ExecMainStatus"]) == \
        ("inactive", "success", "0")
    assert _server_pid(guest) == owner_server and _deacon(guest) == deacon
    guest.systemctl("start", TMUX)
    guest.wait_for(lambda: f"adopted the tmux server PID {owner_server}" in
                   _state(guest)["StatusText"], timeout=60, what="adopted again")


def test_when_the_adopted_server_exits_the_unit_owns_a_fresh_one(guest: GuestSystemd,
                                                                 town: str) -> None:
    owner_server = _server_pid(guest)
    assert owner_server is not None and unit_of(guest, owner_server) == SCOPE
    before = int(_state(guest)["NRestarts"])
    guest.run(["kill", "-9", str(owner_server)])
    main = guest.wait_for(lambda: int(_state(guest)["NRestarts"]) > before and
                          _owns_server(guest), timeout=60,
                          what="the tmux host restarted and running its own server")
    assert guest.read_file(f"/proc/{main}/comm").strip() == "tmux: server"
    assert unit_of(guest, main) == TMUX
    status = _state(guest)["StatusText"]
    assert "running the tmux server" in status and "adopted" not in status
    log = guest.journal("-u", TMUX, "-o", "cat")
    assert f"the adopted tmux server PID {owner_server} on the default socket has exited" \
        in log
    assert "Traceback" not in log
    guest.wait_for(lambda: "pane-died[77]" in _hooks(guest), timeout=30,
                   what="event hooks on the unit's own server")
    deacon = _wait_deacon(guest, "hq-deacon on the unit's own server")
    assert unit_of(guest, deacon) == TMUX


def test_event_wakes_survive_a_restart_of_the_tmux_host(guest: GuestSystemd, town: str
                                                        ) -> None:
    """Issue 8 item 7: after the restart the keeper's watch must follow the new event file;
    with the interval at 300 s a Deacon back within seconds was brought by an event."""
    guest.wait_for(lambda: _owns_server(guest), timeout=60,
                   what="the tmux host owning its server")
    guest.systemctl("restart", KEEPER)  # a fresh keeper: its first pass starts the Deacon
    deacon = _wait_deacon(guest, "hq-deacon before the restart")
    keeper = guest.show(KEEPER, "MainPID", "NRestarts")
    guest.systemctl("restart", TMUX)  # the server and every agent on it end
    deacon = _wait_deacon(guest, "the Deacon back after the tmux host restarted",
                          differs_from=deacon)
    guest.wait_for(lambda: "pane-died[77]" in _hooks(guest), timeout=30,
                   what="event hooks on the restarted server")
    killed_at = time.monotonic()
    guest.run(["kill", "-9", str(deacon)])
    _wait_deacon(guest, "the Deacon back after kill -9, woken by the new event file",
                 differs_from=deacon, timeout=30)
    assert time.monotonic() - killed_at < INTERVAL
    # The same keeper process did it: not the first pass of a restarted keeper.
    assert guest.show(KEEPER, "MainPID", "NRestarts") == keeper
