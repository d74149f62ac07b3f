"""A supervisor that fails for good is told: the unit-failed event, ``journalctl -x``, mayor/.

Also: the catalog the package ships is in journald's database (``--list-catalog``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from gastown_units.runtime.events import BY_NAME, EVENTS
from tests.harness.guest import GuestSystemd
from tests.harness.guest_town import STANDIN_DIR, configure, new_town

OWNER = "carol"
RIG = "myrig"
UNIT = "gastown-refinery@nosuchrig.service"
REPORT = f"gastown-failed@{UNIT}.service"


@pytest.fixture(scope="module")
def town(guest: GuestSystemd) -> Iterator[str]:
    path = new_town(guest, OWNER, rigs={RIG: "mr"})
    configure(guest, OWNER, {"GT_TOWN_ROOT": path,
                             "GT_AGENT_COMMAND": f"{STANDIN_DIR}/agent", "GT_INTERVAL": "2"})
    yield path
    guest.systemctl("stop", "gastown.target", check=False)


def mayor_mail(guest: GuestSystemd, town: str) -> list[str]:
    inbox = f"cd {town} && {STANDIN_DIR}/gt mail inbox --identity mayor/ --json"
    out = guest.run(["sh", "-c", inbox], user=OWNER).stdout
    return [m["subject"] for m in json.loads(out) or []]


def test_the_catalog_is_installed(guest: GuestSystemd, town: str) -> None:
    listed = guest.run(["journalctl", "--list-catalog"]).stdout
    for event in EVENTS:
        assert f"{event.message_id} gastown-units: {event.title}" in listed


def test_a_config_error_is_reported_once_with_its_explanation(guest: GuestSystemd,
                                                              town: str) -> None:
    guest.systemctl("start", UNIT, check=False)
    guest.wait_for(lambda: guest.show(UNIT, "ActiveState")["ActiveState"] == "failed",
                   timeout=30, what="the failed unit")
    assert guest.show(UNIT, "ExecMainStatus")["ExecMainStatus"] == "78"
    event = BY_NAME["unit-failed"].message_id
    guest.wait_for(lambda: guest.journal(f"MESSAGE_ID={event}", "-o", "cat"), timeout=60,
                   what="the unit-failed event")
    guest.wait_for(lambda: mayor_mail(guest, town), timeout=60, what="mail to mayor/")
    assert mayor_mail(guest, town) == [f"UNIT_FAILED: {UNIT} stays down"]
    explained = guest.journal(f"MESSAGE_ID={event}", "-x", "-o", "short")
    assert "failed for good" in explained and "status 78" in explained
    assert f"Subject: Gas Town unit {UNIT} failed for good" in explained  # the catalog's
    assert "What to do:" in explained
    fields = guest.journal(f"MESSAGE_ID={event}", "-o", "json").splitlines()
    assert json.loads(fields[0])["GT_UNIT"] == UNIT
    # Asked again (the same failure): nothing new.
    guest.systemctl("start", REPORT, check=False)
    guest.wait_for(lambda: guest.show(REPORT, "ActiveState")["ActiveState"] != "activating",
                   timeout=60, what="the report to finish")
    assert mayor_mail(guest, town) == [f"UNIT_FAILED: {UNIT} stays down"]
    assert len(guest.journal(f"MESSAGE_ID={event}", "-o", "cat").splitlines()) == 1
    guest.systemctl("reset-failed", UNIT, check=False)


def test_a_unit_at_its_start_limit_is_reported(guest: GuestSystemd, town: str) -> None:
    unit = "gastown-witness@flaky.service"
    guest.write_file(f"/etc/systemd/system/{unit}.d/flaky.conf",
                     "[Unit]\nStartLimitIntervalSec=5min\nStartLimitBurst=2\n"
                     "[Service]\nExecStart=\nExecStart=/bin/false\nRestartSec=100ms\n")
    guest.systemctl("daemon-reload")
    guest.systemctl("start", unit, check=False)
    guest.wait_for(lambda: guest.show(unit, "ActiveState")["ActiveState"] == "failed",
                   timeout=60, what="the start limit")  # Result stays exit-code (252)
    assert "Start request repeated too quickly" in guest.journal("-u", unit, "-o", "cat")
    subject = f"UNIT_FAILED: {unit} stays down"
    guest.wait_for(lambda: subject in mayor_mail(guest, town), timeout=60,
                   what="mail to mayor/ about the start limit")
    event = BY_NAME["unit-failed"].message_id
    said = guest.journal(f"MESSAGE_ID={event}", f"GT_UNIT={unit}", "-o", "cat")
    assert said.count("failed for good") == 1 and "start limit" in said
    assert mayor_mail(guest, town).count(subject) == 1
    guest.systemctl("reset-failed", unit, check=False)
