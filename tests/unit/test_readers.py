"""Every reader of a town or state file is total: a typed value or DamagedFile, never a
traceback, and never a silent fallback where the fallback would judge a running agent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gastown_units.services.restart_tracker import Policy, RestartTracker
from gastown_units.town.agents import resolve_agent
from gastown_units.town.deacon_files import read_heartbeat
from gastown_units.town.identity import Role
from gastown_units.town.jsonfile import DamagedFile, read_json, read_state_object
from gastown_units.town.layout import Town
from gastown_units.town.patrols import patrol_enabled
from gastown_units.town.polecats import git_dir, polecat_names
from gastown_units.town.rigs import load_rigs, read_routes
from gastown_units.town.shutdown_marks import read_mark
from gastown_units.town.wisp import read_wisp_config
from tests.harness.town import make_town

DAMAGES: dict[str, bytes | None] = {
    "garbage": b"\xff\xfe\x00garbage{",
    "truncated": b'{"rigs": {"gastown": ',
    "empty": b"",
    "nested": b"[" * 100_000,
    "nan": b'{"x": NaN}',
    "overflow": b'{"x": 1e999}',
    "directory": None,
    "dangling": None,
}


def damage(path: Path, kind: str) -> None:
    """Replace ``path`` by one kind of damage."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove(path)
    if kind == "directory":
        path.mkdir()
    elif kind == "dangling":
        path.symlink_to(path.parent / "no-such-target")
    else:
        data = DAMAGES[kind]
        assert data is not None
        path.write_bytes(data)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    elif path.is_symlink() or path.exists():
        path.unlink()


@pytest.fixture
def town(tmp_path: Path) -> Town:
    return Town.open(make_town(tmp_path / "town"))


@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_read_json_raises_damaged_file_naming_it(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "x.json"
    damage(path, kind)
    with pytest.raises(DamagedFile) as err:
        read_json(path)
    assert str(err.value).startswith(str(path))


def test_missing_is_none_but_dangling_is_damage(tmp_path: Path) -> None:
    assert read_json(tmp_path / "none.json") is None
    damage(tmp_path / "d.json", "dangling")
    with pytest.raises(DamagedFile, match="dangling symlink"):
        read_json(tmp_path / "d.json")


@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_every_town_reader_is_total(town: Town, kind: str) -> None:
    for path, reader in [
        (town.rigs_json, lambda: load_rigs(town)),
        (town.daemon_json, lambda: patrol_enabled(town, "deacon")),
        (town.wisp_config("gastown"), lambda: read_wisp_config(town, "gastown")),
        (town.town_settings, lambda: resolve_agent(town, Role.DEACON, None, None)),
        (town.rig_settings("gastown"),
         lambda: resolve_agent(town, Role.WITNESS, "gastown", None)),
    ]:
        saved = path.read_bytes() if path.is_file() else None
        damage(path, kind)
        with pytest.raises(DamagedFile) as err:
            reader()
        assert str(path) in str(err.value)
        remove(path)
        if saved is not None:
            path.write_bytes(saved)


@pytest.mark.parametrize("settings", [
    [], {"default_agent": 5}, {"role_agents": []}, {"role_agents": {"deacon": 5}},
    {"agents": []}, {"default_agent": "x", "agents": {"x": 5}}, "claude",
])
def test_wrong_types_in_settings_never_fall_back_to_claude(town: Town, settings: object
                                                           ) -> None:
    town.town_settings.write_text(json.dumps(settings))
    with pytest.raises(ValueError, match="settings/config.json"):
        resolve_agent(town, Role.DEACON, None, None)


def test_an_unknown_agent_names_the_settings_file(town: Town) -> None:
    town.town_settings.write_text(json.dumps({"default_agent": "standin"}))
    with pytest.raises(ValueError, match="unknown agent 'standin'.*settings/config.json"):
        resolve_agent(town, Role.DEACON, None, None)


def test_missing_settings_still_mean_claude(town: Town) -> None:
    assert resolve_agent(town, Role.DEACON, None, None).name == "claude"


@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_routes_skip_bad_lines_and_refuse_unreadable_files(town: Town, kind: str) -> None:
    damage(town.routes, kind)
    if kind in ("directory", "dangling"):
        with pytest.raises(DamagedFile):
            read_routes(town)
    else:
        assert read_routes(town) == []


def test_invalid_utf8_in_routes_spoils_only_its_line(town: Town) -> None:
    town.routes.write_bytes(b'{"prefix": "a\xff-", "path": "x"}\n{"prefix": "gt-", "path": "y"}\n')
    assert [r.prefix for r in read_routes(town)] == ["gt"]


@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_heartbeat_damage_is_no_heartbeat_with_a_reason(town: Town, kind: str) -> None:
    damage(town.heartbeat, kind)
    beat = read_heartbeat(town)
    assert beat.timestamp is None and str(town.heartbeat) in beat.problem


@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_state_files_are_set_aside(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "units" / "witness-gastown.json"
    damage(path, kind)
    assert read_state_object(path) == {}
    assert not path.exists() and not path.is_symlink()
    assert (path.parent / (path.name + ".bad")).is_symlink() or \
        (path.parent / (path.name + ".bad")).exists()


@pytest.mark.parametrize("content", [[1, 2], {"agents": []}, {"agents": 5},
                                     {"agents": {"gt-x": {"restart_count": 10 ** 20}}}])
def test_restart_state_of_wrong_types_is_fresh(tmp_path: Path, content: object) -> None:
    path = tmp_path / "restart_state.json"
    path.write_text(json.dumps(content))
    tracker = RestartTracker(path, Policy())
    tracker.load()
    tracker.record("gt-x", 1000.0)  # no overflow, whatever the file said
    tracker.save()
    assert json.loads(path.read_text())["agents"]["gt-x"]["restart_count"] >= 1


@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_an_unreadable_shutdown_marker_holds(town: Town, kind: str) -> None:
    path = town.daemon_dir / "shutdowns" / "gt-gastown-toast.json"
    damage(path, kind)
    mark = read_mark(town, "gt-gastown-toast")
    assert mark is not None and mark.holds()
    assert path.exists() or path.is_symlink()  # not set aside: it must keep holding


def test_polecat_names_skip_unusable_names(town: Town) -> None:
    base = town.rig_dir("gastown") / "polecats"
    for name in ("toast", "bad\nname", "-rf", "x" * 200, ".hidden", "ok_2"):
        (base / name).mkdir()
    assert polecat_names(town, "gastown") == ["ok_2", "toast"]


@pytest.mark.parametrize("data", [b"gitdir: /srv/\xff\xfe/x\n", b"\xff" * 10, b"", b"gitdir:"])
def test_git_file_of_any_bytes(tmp_path: Path, data: bytes) -> None:
    (tmp_path / ".git").write_bytes(data)
    result = git_dir(tmp_path)
    assert result is None or isinstance(result, Path)


@pytest.mark.parametrize("command", ["node\ufffd", "\ufffd\ufffd", "claude\n", "-", "x" * 5000,
                                     "1.2.3\ufffd", ""])
def test_a_weird_pane_command_is_just_not_the_agent(command: str) -> None:
    from gastown_units.services.sessions import Liveness, pane_liveness
    from gastown_units.town.agents import PRESETS, AgentProgram

    claude = AgentProgram("claude", PRESETS["claude"].argv, PRESETS["claude"].process_names)
    assert pane_liveness(command, 2 ** 22 + 12345, False, claude) is not Liveness.RUNNING


def test_resolution_order_and_a_runtime_object_are_kept(town: Town) -> None:
    town.town_settings.write_text(json.dumps({"role_agents": {"witness": "codex"},
                                              "default_agent": "gemini"}))
    town.rig_settings("gastown").parent.mkdir(parents=True, exist_ok=True)
    town.rig_settings("gastown").write_text(json.dumps(
        {"agent": "amp", "runtime": {"provider": "claude", "command": "claude"}}))
    assert resolve_agent(town, Role.WITNESS, "gastown", None).name == "codex"
    assert resolve_agent(town, Role.REFINERY, "gastown", None).name == "amp"
    assert resolve_agent(town, Role.DEACON, None, None).name == "gemini"
