"""gastown-witness@<rig> / gastown-refinery@<rig> / gastown-rig@<rig>.target under systemd."""

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

OWNER = "bob"
RIG = "myrig"
BROKEN = "broken"


@pytest.fixture(scope="module")
def town(guest: GuestSystemd) -> Iterator[str]:
    path = new_town(guest, OWNER, rigs={RIG: "mr", BROKEN: "br"})
    guest.write_file(f"{path}/.beads-wisp/config/{BROKEN}.json", "{ this is not json",
                     owner=OWNER)
    configure(guest, OWNER, {"GT_TOWN_ROOT": path,
                             "GT_AGENT_COMMAND": f"{STANDIN_DIR}/agent",
                             "GT_INTERVAL": "2", "GT_BD_TIMEOUT": "3"})
    guest.systemctl("enable", "--now", f"gastown-witness@{RIG}", f"gastown-refinery@{RIG}")
    yield path
    guest.systemctl("stop", "gastown.target", check=False)


def _running(guest: GuestSystemd, session: str) -> int | None:
    pane = tmux_panes(guest, OWNER).get(session)
    return pane[0] if pane and pane[1] == "claude" else None


def _wait(guest: GuestSystemd, session: str) -> int:
    return guest.wait_for(lambda: _running(guest, session), timeout=90,
                          what=f"{session} running the agent")


def test_enable_now_brings_witness_and_refinery_up(guest: GuestSystemd, town: str) -> None:
    witness = _wait(guest, f"gt-{RIG}-witness")
    refinery = _wait(guest, f"gt-{RIG}-refinery")
    for unit in (f"gastown-witness@{RIG}.service", f"gastown-refinery@{RIG}.service"):
        assert guest.show(unit, "ActiveState")["ActiveState"] == "active"
    assert unit_of(guest, witness) == unit_of(guest, refinery) == "gastown-tmux.service"
    record = guest.wait_for(lambda: agent_record(guest, f"{town}/{RIG}/refinery/rig"),
                            timeout=30, what="refinery record")
    assert (record["env"]["GT_RIG"], record["env"]["GT_REFINERY"]) == (RIG, "1")


def test_a_broken_rig_does_not_touch_the_other(guest: GuestSystemd, town: str) -> None:
    before = {s: _wait(guest, s) for s in (f"gt-{RIG}-witness", f"gt-{RIG}-refinery")}
    unit = f"gastown-witness@{BROKEN}.service"
    guest.systemctl("enable", "--now", unit)
    guest.wait_for(lambda: "wisp config unreadable" in guest.show(unit, "StatusText")
                   ["StatusText"], timeout=30, what="broken rig's STATUS= line")
    assert guest.show(unit, "ActiveState")["ActiveState"] == "active"  # no crash loop
    assert f"gt-{BROKEN}-witness" not in tmux_panes(guest, OWNER)
    assert {s: _running(guest, s) for s in before} == before
    guest.systemctl("disable", "--now", unit)


def test_restart_keeps_every_session_of_the_rig(guest: GuestSystemd, town: str) -> None:
    guest.run(["mkdir", "-p", f"{town}/{RIG}/polecats/nux"], user=OWNER)
    guest.run(["tmux", "-N", "new-session", "-d", "-s", f"gt-{RIG}-nux", "-c",
               f"{town}/{RIG}/polecats/nux", f"{STANDIN_DIR}/agent polecat"], user=OWNER)
    sessions = (f"gt-{RIG}-witness", f"gt-{RIG}-refinery", f"gt-{RIG}-nux")
    before = {s: _wait(guest, s) for s in sessions}
    unit = f"gastown-witness@{RIG}.service"
    restarts_before = guest.show(unit, "MainPID")["MainPID"]
    guest.systemctl("restart", unit)
    assert guest.show(unit, "MainPID")["MainPID"] != restarts_before
    guest.systemctl("kill", "-s", "KILL", unit)
    guest.wait_for(lambda: guest.show(unit, "ActiveState")["ActiveState"] == "active"
                   and guest.show(unit, "NRestarts")["NRestarts"] != "0",
                   timeout=60, what="restart after SIGKILL")
    assert {s: _running(guest, s) for s in sessions} == before


def test_rig_target_stops_and_starts_both(guest: GuestSystemd, town: str) -> None:
    before = {s: _wait(guest, s) for s in (f"gt-{RIG}-witness", f"gt-{RIG}-refinery")}
    guest.systemctl("start", f"gastown-rig@{RIG}.target")
    guest.systemctl("stop", f"gastown-rig@{RIG}.target")
    for role in ("witness", "refinery"):
        guest.wait_for(lambda role=role: guest.show(f"gastown-{role}@{RIG}.service",
                                                    "ActiveState")["ActiveState"] == "inactive",
                       timeout=30, what=f"{role} stopped with the rig target")
    assert {s: _running(guest, s) for s in before} == before
    guest.systemctl("start", f"gastown-rig@{RIG}.target")
    for role in ("witness", "refinery"):
        assert guest.show(f"gastown-{role}@{RIG}.service", "ActiveState")["ActiveState"] \
            == "active"


def test_journal_by_rig(guest: GuestSystemd, town: str) -> None:
    _wait(guest, f"gt-{RIG}-witness")
    entries = guest.journal(f"GT_RIG={RIG}", "-o", "verbose")
    assert "SYSLOG_IDENTIFIER=gastown-witness@myrig" in entries
    assert "SYSLOG_IDENTIFIER=gastown-refinery@myrig" in entries
    assert "Traceback" not in guest.journal(f"GT_RIG={RIG}", "-o", "cat")


def test_unknown_rig_fails_once(guest: GuestSystemd, town: str) -> None:
    unit = "gastown-refinery@nosuchrig.service"
    guest.systemctl("start", unit, check=False)
    guest.wait_for(lambda: guest.show(unit, "ActiveState")["ActiveState"] == "failed",
                   timeout=30, what="failed unit")
    assert guest.show(unit, "ExecMainStatus")["ExecMainStatus"] == "78"
    assert "is not in" in guest.journal("-u", unit, "-o", "cat")
    guest.systemctl("reset-failed", unit, check=False)


def test_hanging_bd_is_survived_and_kills_nothing(guest: GuestSystemd, town: str) -> None:
    unit = f"gastown-witness@{RIG}.service"
    before = {s: _wait(guest, s) for s in (f"gt-{RIG}-witness", f"gt-{RIG}-refinery")}
    restarts = guest.show(unit, "NRestarts")["NRestarts"]
    calls = f"{town}/.standin/calls.jsonl"

    def shows() -> int:  # the stand-in logs every call before it starts to hang
        return guest.read_file(calls).count('"show"')

    seen = shows()
    guest.run(["touch", f"{town}/.standin/bd.hang"], user=OWNER)
    try:  # every pass waits 3 s for bd, well inside the 60 s watchdog: the loop progresses
        guest.wait_for(lambda: "no answer within 3s" in guest.show(unit, "StatusText")
                       ["StatusText"], timeout=60, interval=1, what="a pass that timed out")
        seen = shows()
        guest.wait_for(lambda: shows() >= seen + 4, timeout=60, interval=1,
                       what="more passes of both rig services with a hanging bd")
        shown = guest.show(unit, "ActiveState", "NRestarts", "StatusText")
        assert (shown["ActiveState"], shown["NRestarts"]) == ("active", restarts)
        assert "no answer within 3s" in shown["StatusText"]
        assert {s: _running(guest, s) for s in before} == before
    finally:
        guest.run(["rm", "-f", f"{town}/.standin/bd.hang"])
