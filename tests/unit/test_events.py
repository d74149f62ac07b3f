"""The event table, its journald catalog, per-agent fields and the conditions helper."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gastown_units.runtime import events
from gastown_units.runtime.conditions import Conditions
from gastown_units.runtime.events import EVENTS, agent_fields, catalog, log_event, valid_id
from gastown_units.town.identity import Identity, Role

REPO = Path(__file__).resolve().parents[2]
WANTED = {"agent-restarted", "crash-loop", "mass-death", "stale-request-dropped",
          "shutdown-done", "agent-held", "agent-released", "unit-failed"}


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_every_event_has_a_unique_valid_id_and_text() -> None:
    ids = [e.message_id for e in EVENTS]
    assert all(valid_id(i) and len(i) == 32 for i in ids)
    assert len(set(ids)) == len(ids) and len({e.name for e in EVENTS}) == len(EVENTS)
    assert {e.name for e in EVENTS} >= WANTED
    assert all(e.title and e.explanation and e.fix for e in EVENTS)
    assert all("\n" not in e.title for e in EVENTS)


def parse_catalog(text: str) -> dict[str, dict[str, str]]:
    entries: dict[str, dict[str, str]] = {}
    for block in re.split(r"^-- ", text, flags=re.M)[1:]:
        head, _, body = block.partition("\n\n")
        lines = head.splitlines()
        fields = dict(line.split(": ", 1) for line in lines[1:])
        fields["text"] = " ".join(body.split())
        entries[lines[0].strip()] = fields
    return entries


def test_the_catalog_is_the_table() -> None:
    entries = parse_catalog(catalog())
    assert set(entries) == {e.message_id for e in EVENTS}
    for event in EVENTS:
        entry = entries[event.message_id]
        assert entry["Subject"] == event.title
        assert entry["Defined-By"] == "gastown-units"
        assert entry["Documentation"].startswith("file:///usr/share/doc/gastown-units/")
        assert entry["text"] == f"{event.explanation} What to do: {event.fix}"
    assert all(len(line) <= 100 for line in catalog().splitlines())


def test_the_package_builds_the_catalog_from_the_table_and_updates_journald() -> None:
    rules = (REPO / "debian" / "rules").read_text()
    assert "gastown_units.runtime.events" in rules
    assert "/usr/lib/systemd/catalog/gastown-units.catalog" in rules
    assert "journalctl --update-catalog" in (REPO / "debian" / "gastown-units.postinst").read_text()


@pytest.mark.skipif(shutil.which("journalctl") is None, reason="no journalctl")
def test_journalctl_reads_the_catalog(tmp_path: Path) -> None:
    (tmp_path / "usr/lib/systemd/catalog").mkdir(parents=True)
    (tmp_path / "var/lib/systemd/catalog").mkdir(parents=True)
    (tmp_path / "usr/lib/systemd/catalog/gastown-units.catalog").write_text(catalog())
    subprocess.run(["journalctl", f"--root={tmp_path}", "--update-catalog"], check=True,
                   timeout=60)
    listed = subprocess.run(["journalctl", f"--root={tmp_path}", "--list-catalog"],
                            check=True, capture_output=True, text=True, timeout=60).stdout
    for event in EVENTS:
        assert f"{event.message_id} gastown-units: {event.title}" in listed


def test_agent_fields_name_agent_role_and_rig() -> None:
    assert agent_fields(Identity(Role.POLECAT, "gastown", "nux")) == {
        "GT_AGENT": "gastown/nux", "GT_ROLE": "polecat", "GT_RIG": "gastown"}
    assert agent_fields(Identity(Role.WITNESS, "gastown")) == {
        "GT_AGENT": "gastown/witness", "GT_ROLE": "witness", "GT_RIG": "gastown"}
    assert agent_fields(Identity(Role.DEACON)) == {"GT_AGENT": "deacon/", "GT_ROLE": "deacon"}


def test_log_event_carries_the_message_id_and_the_agents_fields() -> None:
    logger = logging.getLogger("test-events")
    capture = Capture()
    logger.addHandler(capture)
    try:
        log_event("crash-loop", "CRASH LOOP: %s", "gt-gastown-nux",
                  who=Identity(Role.POLECAT, "gastown", "nux"), logger=logger)
        log_event("unit-failed", "failed", fields={"GT_UNIT": "gastown-witness@x.service"},
                  logger=logger)
    finally:
        logger.removeHandler(capture)
    loop, unit = capture.records
    assert loop.getMessage() == "CRASH LOOP: gt-gastown-nux" and loop.levelno == logging.ERROR
    got = {k: getattr(loop, k) for k in ("MESSAGE_ID", "GT_AGENT", "GT_ROLE", "GT_RIG")}
    assert got == {"MESSAGE_ID": events.BY_NAME["crash-loop"].message_id,
                   "GT_AGENT": "gastown/nux", "GT_ROLE": "polecat", "GT_RIG": "gastown"}
    assert vars(unit)["GT_UNIT"] == "gastown-witness@x.service"
    assert vars(unit)["MESSAGE_ID"] == events.BY_NAME["unit-failed"].message_id


def test_a_condition_is_logged_when_it_starts_changes_and_ends() -> None:
    logger = logging.getLogger("test-conditions")
    capture = Capture()
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    try:
        c = Conditions(logger)
        assert not c.clear("gt")  # nothing held: nothing said
        assert c.set("gt", "gt missing")
        assert not c.set("gt", "gt missing") and not c.set("gt", "gt missing")
        assert c.holds("gt")
        assert c.set("gt", "gt missing again, differently")  # new text: said again
        assert c.set("bd", "bd failing", fields={"GT_RIG": "gastown"})
        assert c.clear("gt") and not c.clear("gt")
        assert c.clear("bd", "bd works again")
    finally:
        logger.removeHandler(capture)
    said = [(r.levelno, r.getMessage()) for r in capture.records]
    assert said == [(logging.WARNING, "gt missing"),
                    (logging.WARNING, "gt missing again, differently"),
                    (logging.WARNING, "bd failing"),
                    (logging.INFO, "resolved: gt missing again, differently"),
                    (logging.INFO, "bd works again")]
    assert vars(capture.records[2])["GT_RIG"] == "gastown"


def unit_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_units_leave_gt_role_to_the_entries_and_report_failing_for_good() -> None:
    units = sorted((REPO / "systemd").glob("*.service"))
    for path in units:
        lines = unit_lines(path)
        extra = [line for line in lines if line.startswith("LogExtraFields=")]
        assert not any("GT_ROLE=" in line or "GT_AGENT=" in line for line in extra), path.name
        restarts = any(line.startswith("Restart=") for line in lines)
        if path.name == "gastown-failed@.service":
            assert not any(line.startswith("OnFailure=") for line in lines)
            assert "ExecStart=/usr/bin/gastown-units unit-failed %i" in lines
        elif restarts:  # a supervisor: its permanent failure is reported
            assert "OnFailure=gastown-failed@%n.service" in lines, path.name
