"""``gastown-units status`` in a real systemd (issue 10, 4): run from a plain shell outside
the town, as root and as the owner, it reads /etc/gastown/gastown.conf, the owner's tmux
server and the units; exit 0 only when everything expected runs."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.harness.guest import GuestSystemd
from tests.harness.guest_town import STANDIN_DIR, configure, new_town, tmux_panes

OWNER = "carol"
RIG = "myrig"
UNITS = ("gastown-deacon-keeper", "gastown-lifecycle-mail", "gastown-polecat-health.path",
         "gastown-polecat-health.timer", f"gastown-witness@{RIG}", f"gastown-refinery@{RIG}")
SESSIONS = ("hq-deacon", f"gt-{RIG}-witness", f"gt-{RIG}-refinery")


@pytest.fixture(scope="module")
def town(guest: GuestSystemd) -> Iterator[str]:
    path = new_town(guest, OWNER, rigs={RIG: "mr"})
    # The owner's systemctl needs the system bus (as on any Debian with dbus): the guest
    # boots without it. Without it status says "units not checked" (a test below).
    guest.systemctl("start", "dbus.socket")
    configure(guest, OWNER, {"GT_TOWN_ROOT": path, "GT_AGENT_COMMAND": f"{STANDIN_DIR}/agent",
                             "GT_INTERVAL": "2"})
    guest.systemctl("enable", "--now", *UNITS)
    guest.wait_for(lambda: all(s in tmux_panes(guest, OWNER) and
                               tmux_panes(guest, OWNER)[s][1] == "claude" for s in SESSIONS),
                   timeout=90, what="every agent running")
    yield path
    guest.systemctl("stop", "gastown.target", check=False)


def status(guest: GuestSystemd, user: str | None = None) -> tuple[int, dict]:
    result = guest.run(["sh", "-c", "cd / && exec gastown-units status --json"], user=user,
                       check=False)
    return result.returncode, json.loads(result.stdout)


def test_root_and_owner_see_the_same_healthy_town(guest: GuestSystemd, town: str) -> None:
    for user in (None, OWNER):
        last: list[object] = []

        def healthy(u: str | None = user, last: list[object] = last
                    ) -> tuple[int, dict] | None:
            found = status(guest, u)
            last[:] = [found]
            return found if found[0] == 0 else None

        try:
            code, report = guest.wait_for(healthy, timeout=60,
                                          what=f"status exit 0 as {user or 'root'}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast status: {last}") from None
        assert report["town"] == town and report["owner"] == OWNER
        rows = {r["address"]: r for r in report["agents"]}
        assert all(rows[a]["state"] == "running" for a in ("deacon/", f"{RIG}/witness",
                                                            f"{RIG}/refinery"))
        assert report["units"] is not None, report
        units = {u["name"]: u for u in report["units"]}
        assert units[f"gastown-witness@{RIG}.service"]["active"] == "active"
        assert units[f"gastown-witness@{RIG}.service"]["status"]  # the last STATUS= line
        assert units["gastown-tmux.service"]["active"] == "active"


def test_a_stopped_unit_fails_status_for_root_and_owner(guest: GuestSystemd,
                                                        town: str) -> None:
    guest.systemctl("stop", f"gastown-refinery@{RIG}")
    try:
        code, report = status(guest)
        assert code == 1
        assert report["problems"] == [f"gastown-refinery@{RIG}.service is inactive"]
        code, report = status(guest, OWNER)
        assert code == 1
        assert report["problems"] == [f"gastown-refinery@{RIG}.service is inactive"]
    finally:
        guest.systemctl("start", f"gastown-refinery@{RIG}")
    guest.wait_for(lambda: status(guest)[0] == 0, timeout=60, what="healthy again")


def test_config_outside_the_town_reads_the_units_file(guest: GuestSystemd, town: str) -> None:
    out = guest.run(["sh", "-c", "cd / && gastown-units config"], user=OWNER).stdout
    assert f"GT_TOWN_ROOT={town}    # from /etc/gastown/gastown.conf" in out
    cleared = guest.run(["sh", "-c", "cd / && gastown-units clear-backoff nosuchrig/nux"],
                        check=False)
    assert cleared.returncode == 1 and "no rig 'nosuchrig'" in cleared.stderr


def test_without_the_system_bus_the_owner_is_told_units_are_not_checked(
        guest: GuestSystemd, town: str) -> None:
    guest.systemctl("stop", "dbus.socket", "dbus.service")
    try:
        code, report = status(guest, OWNER)
        assert report["units"] is None
        assert any(n.startswith("units not checked: systemctl show failed")
                   for n in report["notes"]), report
        assert code == 0  # the agents all run; what could not be seen is said
        assert status(guest)[1]["units"] is not None  # root needs no bus
    finally:
        guest.systemctl("start", "dbus.socket")
