"""Configuration layering (issue 10, 5): the town file, the rig's file, the environment,
then flags — the order a unit sees them — and where each value came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from gastown_units.cli import main
from gastown_units.config import Settings, load_with_sources
from gastown_units.config_files import parse_environment_file, read_environment_file
from gastown_units.errors import ConfigError


@pytest.fixture
def files(tmp_path: Path) -> Path:
    conf = tmp_path / "gastown.conf"
    conf.write_text("# the town\nGT_TOWN_ROOT=/srv/town\nGT_INTERVAL=20\n"
                    "GT_KILL_GRACE=4\nPATH=/opt/tools/bin:/usr/bin\n")
    (tmp_path / "rigs").mkdir()
    (tmp_path / "rigs" / "myrig.conf").write_text("GT_INTERVAL=7\nGT_WITNESS_AUTO_SPAWN=true\n")
    return conf


def test_each_later_layer_wins_and_says_where_it_came_from(files: Path) -> None:
    env = {"GT_CONFIG": str(files), "GT_KILL_GRACE": "1"}
    settings, sources = load_with_sources(env, {"restart_backoff": 9.0}, rig="myrig")
    assert settings.town_root == Path("/srv/town")
    assert sources["town_root"] == str(files)
    assert (settings.interval, sources["interval"]) == (7.0, str(files.parent / "rigs" /
                                                               "myrig.conf"))
    assert settings.auto_spawn is True
    assert (settings.kill_grace, sources["kill_grace"]) == (1.0, "environment")
    assert (settings.restart_backoff, sources["restart_backoff"]) == (9.0, "flag")
    assert sources["bd_bin"] == "default"


def test_without_a_rig_its_file_is_not_read(files: Path) -> None:
    settings = Settings.load({"GT_CONFIG": str(files)})
    assert settings.interval == 20.0 and settings.auto_spawn is False


def test_an_explicit_environment_without_gt_config_reads_no_file() -> None:
    _settings, sources = load_with_sources({"GT_INTERVAL": "3"})
    assert sources["interval"] == "environment"
    assert set(sources.values()) == {"environment", "default"}


def test_empty_gt_config_reads_no_file(files: Path) -> None:
    settings = Settings.load({"GT_CONFIG": ""})
    assert settings.town_root is None


def test_a_named_file_that_is_missing_or_bad_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        Settings.load({"GT_CONFIG": str(tmp_path / "nope.conf")})
    (tmp_path / "dir.conf").mkdir()
    with pytest.raises(ConfigError, match="dir.conf"):
        Settings.load({"GT_CONFIG": str(tmp_path / "dir.conf")})
    bad = tmp_path / "bad.conf"
    bad.write_text("GT_INTERVAL=nan\n")
    with pytest.raises(ConfigError, match=r"GT_INTERVAL \(in .*bad.conf\)"):
        Settings.load({"GT_CONFIG": str(bad)})


def test_a_missing_rig_file_is_fine(files: Path) -> None:
    assert Settings.load({"GT_CONFIG": str(files)}, rig="other").interval == 20.0


def test_environment_file_syntax() -> None:
    text = ('A=1\n  # comment\n; also\nB="x \\"y\\" \\\\z"\nC=\'$not expanded\'\n'
            'export D=1\nE = spaced \nF=con\\\ntinued\n=nothing\n1X=bad\n')
    assert parse_environment_file(text) == {
        "A": "1", "B": 'x "y" \\z', "C": "$not expanded", "E": "spaced", "F": "continued"}


def test_non_utf8_bytes_do_not_crash(tmp_path: Path) -> None:
    path = tmp_path / "x.conf"
    path.write_bytes(b"A=\xff\nB=2\n")
    values = read_environment_file(path)
    assert values is not None and values["B"] == "2"


def test_config_command_shows_sources(files: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GT_CONFIG", raising=False)
    monkeypatch.setenv("GT_KILL_GRACE", "3")
    assert main(["--config", str(files), "config", "--rig", "myrig"]) == 0
    out = capsys.readouterr().out
    assert f"GT_TOWN_ROOT=/srv/town    # from {files};" in out
    assert "GT_INTERVAL=7.0    # from " + str(files.parent / "rigs" / "myrig.conf") in out
    assert "GT_KILL_GRACE=3.0    # from environment" in out


def test_config_command_refuses_a_hostile_rig(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--rig", "../x"]) != 0
    assert "invalid rig name" in capsys.readouterr().err
