"""The ``bd`` port against the stand-in in every era's mode (beads.md §1.3, §2.4).

"Not found" in any of its forms is *absent*; every other failure is *unknown* (ToolError).
A rig without its rig bead is operational by its wisp config alone.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gastown_units.errors import ToolError
from gastown_units.ports.beads import Beads
from gastown_units.services.rig_gate import RigGate
from gastown_units.town.layout import Town
from tests.harness.town import STANDINS

MODES = ["O", "daemon", "N"]


def beads(town: Path, mode: str) -> Beads:
    (town / ".standin").mkdir(exist_ok=True)
    (town / ".standin" / "bd.mode").write_text(mode + "\n")
    return Beads(binary=str(STANDINS / "bd"), cwd=town, timeout=30)


def create(town: Path, title: str, *extra: str, rig: str | None = None) -> str:
    """An issue in the town's database, or in ``rig``'s (where its prefix routes)."""
    out = subprocess.run([str(STANDINS / "bd"), "create", f"--title={title}", "--json", *extra],
                         cwd=town / rig if rig else town, capture_output=True, text=True,
                         timeout=30, check=True)
    return json.loads(out.stdout)["id"]


@pytest.mark.parametrize("mode", MODES)
def test_a_missing_issue_is_absent_in_every_mode(town: Path, mode: str) -> None:
    port = beads(town, mode)
    assert port.show("hq-nope1") is None
    assert port.show_many(["hq-nope1", "hq-nope2"]) == {}


@pytest.mark.parametrize("mode", MODES)
def test_found_and_missing_together(town: Path, mode: str) -> None:
    port = beads(town, mode)
    found = create(town, "real")
    assert set(port.show_many([found, "hq-nope1"])) == {found}


@pytest.mark.parametrize("mode", MODES)
def test_a_failing_bd_is_unknown_not_absent(town: Path, mode: str) -> None:
    port = beads(town, mode)
    (town / ".standin" / "bd.fail").write_text("database is locked")
    with pytest.raises(ToolError, match="database is locked"):
        port.show("hq-nope1")
    with pytest.raises(ToolError):
        port.show_many(["hq-a", "hq-b"])


@pytest.mark.parametrize("mode", MODES)
def test_a_rig_without_its_rig_bead_is_operational(town: Path, mode: str) -> None:
    gate = RigGate(Town.open(town), beads(town, mode), "gastown", "gt", max_age=300).check()
    assert gate.operational and not gate.unknown, gate.reason


def test_a_docked_rig_bead_still_closes_the_gate(town: Path) -> None:
    create(town, "gastown", "--id=gt-rig-gastown", "--type=rig", "--labels=status:docked",
           "--force", rig="gastown")
    gate = RigGate(Town.open(town), beads(town, "N"), "gastown", "gt", max_age=300).check()
    assert not gate.operational and "docked" in gate.reason


def test_direct_mode_asks_once_even_when_nothing_is_found(town: Path) -> None:
    port = beads(town, "O")
    calls = town / ".standin" / "calls.jsonl"
    before = len(calls.read_text().splitlines()) if calls.exists() else 0
    assert port.show_many(["hq-nope1", "hq-nope2", "hq-nope3"]) == {}
    assert len(calls.read_text().splitlines()) - before == 1


@pytest.mark.parametrize("mode", MODES)
def test_agent_listing_of_a_rig_database_is_complete_in_every_era(town: Path, mode: str) -> None:
    """beads.md §5.2: the label form (untruncated) finds agents auto-created as tasks; at N
    label queries hide infra rows (§9.7), and the type form finds them."""
    port = beads(town, mode)
    rig_db = town / "gastown" / ".beads"
    for n in range(55):  # past list's default limit of 50
        create(town, f"polecat {n}", f"--id=gt-gastown-polecat-p{n:02d}", "--type=agent",
               "--labels=gt:agent", "--force", rig="gastown")
    subprocess.run([str(STANDINS / "bd"), "agent", "state", "gt-gastown-polecat-auto", "working"],
                   cwd=town / "gastown", capture_output=True, timeout=30, check=False)
    found = {a.id for a in port.at(rig_db).list_agents()}
    assert len({f for f in found if f.startswith("gt-gastown-polecat-p")}) == 55
    if mode != "N":  # bd agent state exists only before N (§3.3, §9.1)
        assert "gt-gastown-polecat-auto" in found
    else:  # a mid-2026 town keeps its agents as tasks labelled gt:agent
        create(town, "task agent", "--id=gt-gastown-polecat-task", "--type=task",
               "--labels=gt:agent", "--force", rig="gastown")
        assert "gt-gastown-polecat-task" in {a.id for a in port.at(rig_db).list_agents()}
    assert {a.id for a in port.list_agents()} == set()  # the town database holds none
