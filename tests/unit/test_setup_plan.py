"""The pure parts of ``gastown-units setup`` and ``sync-rigs``: conf merge, PATH, the plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gastown_units.cli import main
from gastown_units.commands.setup import (
    _MARKER,
    TOWN_UNITS,
    UnitState,
    _marked_path,
    agent_programs,
    conf_values,
    env_value,
    find_tool,
    merge_conf,
    owner_dropin,
    plan_setup,
    rigs_path_dropin,
    service_path,
)
from gastown_units.commands.sync_rigs import rig_changes, rig_of_unit, wanted_rigs
from gastown_units.commands.tmux_stop import stop_line
from gastown_units.errors import ConfigError
from gastown_units.town.layout import Town
from tests.harness.town import make_town

PACKAGED_CONF = Path(__file__).resolve().parents[2] / "systemd" / "gastown.conf"


def test_merge_keeps_the_knob_list_and_puts_values_below_their_doc_line() -> None:
    packaged = PACKAGED_CONF.read_text()
    merged = merge_conf(packaged, {"GT_TOWN_ROOT": "/home/al/gt", "PATH": "/a:/usr/bin"})
    lines = merged.splitlines()
    assert lines[lines.index("#GT_TOWN_ROOT=/home/alice/gt") + 1] == "GT_TOWN_ROOT=/home/al/gt"
    assert lines[lines.index("#PATH=/home/alice/.local/bin:/usr/local/bin:/usr/bin:/bin")
                 + 1] == "PATH=/a:/usr/bin"
    # every other line is untouched, in order
    assert [ln for ln in lines if ln not in ("GT_TOWN_ROOT=/home/al/gt", "PATH=/a:/usr/bin")
            ] == packaged.splitlines()
    assert merge_conf(merged, {"GT_TOWN_ROOT": "/home/al/gt", "PATH": "/a:/usr/bin"}) \
        == merged  # idempotent


def test_merge_replaces_the_operators_value_and_keeps_their_other_settings() -> None:
    text = ("# mine\nGT_INTERVAL=5\nGT_TOWN_ROOT=/old\nexport PATH=/x\n"
            "GT_TOWN_ROOT=/older\nGT_DEGRADED=true\n")
    merged = merge_conf(text, {"GT_TOWN_ROOT": "/new", "PATH": "/y"})
    assert merged == "# mine\nGT_INTERVAL=5\nGT_TOWN_ROOT=/new\nPATH=/y\nGT_DEGRADED=true\n"
    assert merge_conf("", {"GT_TOWN_ROOT": "/t"}) == "GT_TOWN_ROOT=/t\n"
    assert merge_conf("A=1", {"B": "2"}) == "A=1\nB=2\n"  # no final newline before


def test_values_are_quoted_so_that_systemd_reads_them_back() -> None:
    assert env_value("/home/al/gt") == "/home/al/gt"
    assert env_value("/home/a l/g\"t") == '"/home/a l/g\\"t"'
    merged = merge_conf("", {"GT_TOWN_ROOT": "/home/a l/$x\\y"})
    assert conf_values(merged) == {"GT_TOWN_ROOT": "/home/a l/$x\\y"}
    with pytest.raises(ConfigError):
        env_value("/a\nGT_AGENT_COMMAND=evil")


def test_conf_values_reads_active_lines_only() -> None:
    text = "#GT_BD_BIN=nope\n GT_BD_BIN = /opt/bd \nexport GT_GT_BIN='/opt/gt'\n;x=1\nbad\n"
    assert conf_values(text) == {"GT_BD_BIN": "/opt/bd", "GT_GT_BIN": "/opt/gt"}


def test_service_path_tools_first_no_duplicates_absolute_only() -> None:
    path = service_path(["/home/al/.local/bin/claude", "/usr/local/bin/bd",
                         "/usr/local/bin/gt"], "/home/al/bin:.:/usr/bin:relative::/bin")
    assert path == ("/home/al/.local/bin:/usr/local/bin:/home/al/bin:/usr/bin:/bin:"
                    "/usr/local/sbin:/usr/sbin:/sbin")
    # an operator's own directories stay, and a second run gives the same PATH
    first = service_path(["/opt/t/gt"], "/usr/bin:/bin", "/srv/extra:/usr/bin")
    assert first == "/opt/t:/usr/bin:/bin:/srv/extra:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin"
    assert service_path(["/opt/t/gt"], "/usr/bin:/bin", first) == first


def test_the_login_path_is_read_from_the_marked_line_only() -> None:
    noise = f"Welcome!\nPATH=/evil\n{_MARKER}/home/a/bin:/usr/bin\nbye\n"
    assert _marked_path(noise) == "/home/a/bin:/usr/bin"
    assert _marked_path("PATH=/usr/bin\n") is None


def test_find_tool_on_path_and_claudes_own_place(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    for name, mode in (("gt", 0o755), ("bd", 0o644)):
        (tmp_path / "bin" / name).write_text("#!/bin/sh\n")
        (tmp_path / "bin" / name).chmod(mode)
    path = f"relative:{tmp_path}/nothing:{tmp_path}/bin"
    assert find_tool("gt", path) == f"{tmp_path}/bin/gt"
    assert find_tool("bd", path) is None  # not executable
    assert find_tool(f"{tmp_path}/bin/gt", "") == f"{tmp_path}/bin/gt"
    assert find_tool("claude", path, tmp_path) is None
    local = tmp_path / ".claude" / "local"
    local.mkdir(parents=True)
    (local / "claude").write_text("#!/bin/sh\n")
    (local / "claude").chmod(0o755)
    assert find_tool("claude", path, tmp_path) == str(local / "claude")


def test_dropins() -> None:
    assert owner_dropin("alice").endswith("[Service]\nUser=alice\n")
    # an existing drop-in (the README's by-hand one, or the operator's) keeps its lines
    assert owner_dropin("alice", "[Service]\nUser=alice\n") == "[Service]\nUser=alice\n"
    assert owner_dropin("alice", "[Service]\nUser=bob\nGroup=gt") == \
        "[Service]\nUser=alice\nGroup=gt\n"
    assert owner_dropin("alice", "[Service]\nNice=5\n") == \
        "[Service]\nNice=5\n[Service]\nUser=alice\n"
    # with the town: ReadWritePaths= (the supervisors' sandbox), once
    town = Path("/home/alice/gt")
    fresh = owner_dropin("alice", None, town)
    assert fresh.endswith("[Service]\nUser=alice\nReadWritePaths=-/home/alice/gt\n")
    assert owner_dropin("alice", fresh, town) == fresh
    assert owner_dropin("alice", "[Service]\nUser=bob\nNice=5\n", town) == \
        "[Service]\nUser=alice\nReadWritePaths=-/home/alice/gt\nNice=5\n"
    by_hand = "[Service]\nUser=alice\nReadWritePaths=/tmp/x /home/alice/gt/\n"
    assert owner_dropin("alice", by_hand, town) == by_hand
    assert owner_dropin("alice", None, Path("/srv/my town")).endswith(
        'ReadWritePaths="-/srv/my town"\n')
    assert "ReadWritePaths=-/t/50%%\n" in owner_dropin("a", None, Path("/t/50%"))
    assert rigs_path_dropin(Path("/home/a/gt/mayor/rigs.json")).endswith(
        "[Path]\nPathChanged=/home/a/gt/mayor/rigs.json\n")
    assert "PathChanged=/t/50%%/rigs.json" in rigs_path_dropin(Path("/t/50%/rigs.json"))
    with pytest.raises(ConfigError):
        rigs_path_dropin(Path("relative/rigs.json"))


def _states(enabled: set[str], active: set[str], units: list[str]) -> dict[str, UnitState]:
    return {u: UnitState(u in enabled, u in active) for u in units}


def test_plan_of_a_fresh_machine_and_of_a_second_run() -> None:
    units = [*TOWN_UNITS, "gastown-rig@myrig.target"]
    conf, dropin = Path("/etc/gastown/gastown.conf"), Path("/etc/x/owner.conf")
    files = {conf: ("#GT_TOWN_ROOT=\n", "#GT_TOWN_ROOT=\nGT_TOWN_ROOT=/t\n"),
             dropin: (None, "[Service]\nUser=a\n")}
    plan = plan_setup(files, units, _states(set(), set(), units))
    assert [c.path for c in plan.files] == [conf, dropin]
    assert plan.commands == (("daemon-reload",), ("enable", *units), ("start", *units))
    assert plan.files[1].describe() == "create /etc/x/owner.conf:\n    [Service]\n    User=a\n"
    assert "+GT_TOWN_ROOT=/t" in plan.files[0].describe()
    done = {p: (new, new) for p, (_, new) in files.items()}
    again = plan_setup(done, units, _states(set(units), set(units), units))
    assert again.empty


def test_plan_restarts_the_target_never_the_tmux_host_on_a_changed_config() -> None:
    units = list(TOWN_UNITS)
    files = {Path("/c"): ("GT_TOWN_ROOT=/a\n", "GT_TOWN_ROOT=/b\n")}
    plan = plan_setup(files, units, _states(set(units), set(units), units))
    assert plan.commands == (("daemon-reload",), ("restart", "gastown.target"))
    assert all("gastown-tmux.service" not in c for c in plan.commands)
    assert plan.notes and "gastown-tmux.service" in plan.notes[0]
    # nothing changed on disk, one unit stopped: only that one is started
    same = {Path("/c"): ("x\n", "x\n")}
    plan = plan_setup(same, units, _states(set(units), set(units) - {"gastown-rigs.path"},
                                           units))
    assert plan.commands == (("start", "gastown-rigs.path"),)
    # only the rigs.path drop-in changed: only that unit is restarted
    dropin = Path("/etc/systemd/system/gastown-rigs.path.d/town.conf")
    plan = plan_setup({dropin: ("a\n", "b\n")}, units,
                      _states(set(units), set(units), units), {dropin: "gastown-rigs.path"})
    assert plan.commands == (("daemon-reload",), ("restart", "gastown-rigs.path"))
    assert not plan.notes
    # supervisors run, gastown.target does not (enabled one by one, by hand): the target
    # is started, then restarted so that every running supervisor gets the new settings
    running = {"gastown-tmux.service", "gastown-deacon-keeper.service"}
    plan = plan_setup(files, units, _states(set(units), running, units))
    assert plan.commands[0] == ("daemon-reload",)
    assert plan.commands[1][0] == "start" and "gastown.target" in plan.commands[1]
    assert plan.commands[2] == ("restart", "gastown.target")
    # only the tmux host runs: nothing to restart
    plan = plan_setup(files, units, _states(set(units), {"gastown-tmux.service"}, units))
    assert [c[0] for c in plan.commands] == ["daemon-reload", "start"]


def test_agent_programs_follow_the_town_settings(tmp_path: Path) -> None:
    town = Town.open(make_town(tmp_path / "t", rigs={"r1": "r1"}))
    assert agent_programs(town, ["r1"], None) == ["claude"]
    assert agent_programs(town, ["r1"], "/opt/agent --x 'y z'") == ["/opt/agent"]
    (tmp_path / "t" / "settings" / "config.json").write_text(json.dumps(
        {"default_agent": "codex", "role_agents": {"refinery": "mine"},
         "agents": {"mine": {"command": "/opt/mine", "args": []}}}))
    assert agent_programs(town, ["r1"], None) == ["codex", "/opt/mine"]
    (tmp_path / "t" / "settings" / "config.json").write_text("{ broken")
    with pytest.raises(ConfigError, match="config.json"):
        agent_programs(town, ["r1"], None)


def test_setup_refuses_a_missing_town_and_user(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["setup", "--town", str(tmp_path), "--user", "root", "--dry-run",
                 "--path", "/usr/bin"]) == 78
    assert "mayor/town.json is missing" in capsys.readouterr().err
    assert main(["setup", "--town", str(tmp_path), "--user", "no-such-user-gtu",
                 "--dry-run"]) == 78
    assert "no such user: no-such-user-gtu" in capsys.readouterr().err


def test_setup_refuses_a_missing_tool(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    make_town(tmp_path / "t")
    code = main(["setup", "--town", str(tmp_path / "t"), "--user", "root", "--dry-run",
                 "--path", str(tmp_path), "--conf", str(tmp_path / "gastown.conf"),
                 "--unit-dir", str(tmp_path / "units")])
    err = capsys.readouterr().err.strip()
    assert code == 78 and err.startswith("gastown-units: gt not found on the PATH of root")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "gastown.conf").exists()


def test_rig_changes() -> None:
    changes = rig_changes(["a", "b", "c"], enabled={"b", "c", "gone"}, active={"c", "old"})
    assert (changes.enable, changes.start, changes.remove) == (("a",), ("b",),
                                                               ("gone", "old"))
    assert rig_changes(["a"], {"a"}, {"a"}).empty


def test_rig_of_unit_only_takes_safe_names() -> None:
    assert rig_of_unit("gastown-rig@my-rig_2.target") == "my-rig_2"
    for unit in ("gastown-rig@.target", "gastown-rig@a\\x2db.target", "gastown.target",
                 "gastown-rig@a.service", "gastown-rig@-x.target"):
        assert rig_of_unit(unit) is None, unit


def test_wanted_rigs_refuses_bad_names_and_changes_nothing_on_damage(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    town = Town.open(make_town(tmp_path / "t", rigs={"good": "g"}))
    rigs = json.loads(town.rigs_json.read_text())
    rigs["rigs"]["bad name"] = rigs["rigs"]["-x"] = rigs["rigs"]["good"]
    town.rigs_json.write_text(json.dumps(rigs))
    assert wanted_rigs(town) == ["good"]
    assert "refusing rig 'bad name'" in caplog.text and "refusing rig '-x'" in caplog.text
    caplog.clear()
    town.rigs_json.write_text('{"rigs": {"good": ')
    assert wanted_rigs(town) is None
    assert f"{town.rigs_json} is unreadable" in caplog.text
    town.rigs_json.unlink()
    assert wanted_rigs(town) is None
    assert f"{town.rigs_json} is missing" in caplog.text


def test_tmux_stop_line_names_the_sessions() -> None:
    label = "the default socket"
    assert stop_line(["hq-deacon", "gt-r-witness"], 42, 42, label) == (
        "stopping the tmux server (PID 42) on the default socket: ending 2 session(s): "
        "hq-deacon, gt-r-witness")
    assert "keeps running" in stop_line(["a"], 42, 7, label)
    assert "no agent session to end" in stop_line([], None, 7, label)
