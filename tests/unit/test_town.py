from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gastown_units.errors import TownError
from gastown_units.town.deacon_files import BootStatus, read_heartbeat, write_boot_status
from gastown_units.town.identity import Identity, Role
from gastown_units.town.jsonfile import parse_time
from gastown_units.town.layout import Town, find_town_root
from gastown_units.town.patrols import patrol_enabled
from gastown_units.town.rigs import load_rigs, rig_prefixes
from tests.harness.town import make_town


def test_find_town_root_rules(tmp_path: Path) -> None:
    town = make_town(tmp_path / "t")
    assert find_town_root(town / "gastown" / "witness") == town
    # A rig's own mayor/town.json inside polecats/ must not win: the outermost does.
    inner = town / "gastown" / "polecats" / "nux" / "gastown"
    (inner / "mayor").mkdir(parents=True)
    (inner / "mayor" / "town.json").write_text("{}")
    assert find_town_root(inner) == town
    assert find_town_root(tmp_path) is None


def test_open_town_errors(tmp_path: Path) -> None:
    with pytest.raises(TownError, match="does not exist"):
        Town.open(tmp_path / "nope")
    with pytest.raises(TownError, match="town.json"):
        Town.open(tmp_path)
    with pytest.raises(TownError, match="GT_TOWN_ROOT"):
        Town.open(None, cwd=tmp_path)


def test_rigs_and_prefixes(tmp_path: Path) -> None:
    town = Town(make_town(tmp_path / "t", rigs={"gastown": "gt-", "stockdrop": "st"}))
    rigs = load_rigs(town)
    assert {r.name: r.prefix for r in rigs.values()} == {"gastown": "gt", "stockdrop": "st"}
    town.routes.write_text('# comment\n{"prefix":"hq-","path":"."}\n'
                           '{"prefix":"xy-","path":"stockdrop/mayor/rig"}\nnot json\n')
    assert rig_prefixes(town, rigs) == {"gastown": "gt", "stockdrop": "xy"}
    town.rigs_json.write_text('{"rigs": {"bad name": {}}}')
    with pytest.raises(ValueError, match="invalid rig name"):
        load_rigs(town)
    town.rigs_json.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_rigs(town)
    town.rigs_json.unlink()
    assert load_rigs(town) == {}


def test_heartbeat_reading(tmp_path: Path) -> None:
    town = Town(make_town(tmp_path / "t"))
    now = datetime(2026, 1, 2, 18, 30, tzinfo=UTC)
    assert read_heartbeat(town).age(now) is None
    town.heartbeat.write_text(json.dumps({"timestamp": "2026-01-02T18:10:00Z", "cycle": 4}))
    assert read_heartbeat(town).age(now) == 20 * 60
    town.heartbeat.write_text("garbage")
    assert read_heartbeat(town).age(now) is None


def test_go_timestamps_parse() -> None:
    t = parse_time("2026-01-25T18:38:59.123456789-08:00")
    assert t == datetime(2026, 1, 25, 18, 38, 59, 123456, tzinfo=UTC) + timedelta(hours=8)
    assert parse_time("0001-01-01T00:00:00Z") is None and parse_time("junk") is None


def test_boot_status_shape(tmp_path: Path) -> None:
    town = Town(make_town(tmp_path / "t"))
    start = datetime(2026, 1, 2, 18, 30, tzinfo=UTC)
    write_boot_status(town, BootStatus(start, None, "start", "deacon"))
    data = json.loads(town.boot_status.read_text())
    assert data == {"running": False, "started_at": "2026-01-02T18:30:00Z",
                    "completed_at": "0001-01-01T00:00:00Z", "last_action": "start",
                    "target": "deacon"}
    assert oct(os.stat(town.boot_status).st_mode & 0o777) == "0o644"


def test_patrol_toggles(tmp_path: Path) -> None:
    town = Town(make_town(tmp_path / "t"))
    assert patrol_enabled(town, "deacon")
    town.daemon_json.write_text(json.dumps({"patrols": {"deacon": {"enabled": False}}}))
    assert not patrol_enabled(town, "deacon") and patrol_enabled(town, "witness")
    town.daemon_json.write_text("[]")
    with pytest.raises(ValueError):
        patrol_enabled(town, "deacon")


def test_workdirs_follow_the_layouts(tmp_path: Path) -> None:
    town = Town(make_town(tmp_path / "t"))
    rig = town.root / "gastown"
    polecat = Identity(Role.POLECAT, "gastown", "nux")
    assert polecat.workdir(town) == rig / "polecats" / "nux"
    (rig / "polecats" / "nux" / "gastown").mkdir(parents=True)
    assert polecat.workdir(town) == rig / "polecats" / "nux" / "gastown"
    assert Identity(Role.REFINERY, "gastown").workdir(town) == rig / "refinery" / "rig"
    assert Identity(Role.WITNESS, "gastown").workdir(town) == rig / "witness"


def test_claude_settings_written_once(tmp_path: Path) -> None:
    from gastown_units.town.claude_settings import ensure_claude_settings
    from gastown_units.town.identity import DEACON

    town = Town(make_town(tmp_path / "t"))
    path = ensure_claude_settings(DEACON, town)
    assert path == town.root / "deacon" / ".claude" / "settings.json"
    hooks = json.loads(path.read_text())["hooks"]
    assert hooks["SessionStart"][0]["hooks"][0]["command"].startswith("gt prime --hook")
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    path.write_text('{"mine": true}')
    assert ensure_claude_settings(DEACON, town) is None
    assert json.loads(path.read_text()) == {"mine": True}
    witness = Identity(Role.WITNESS, "gastown")
    assert ensure_claude_settings(witness, town) == \
        town.root / "gastown" / "witness" / ".claude" / "settings.json"
