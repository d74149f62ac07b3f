"""Durations are finite and bounded, counts are bounded (issue 9: ``GT_INTERVAL=inf``
overflowed a sleep, ``GT_INTERVAL=nan`` made a busy loop)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gastown_units.config import KNOBS, MAX_SECONDS, Settings
from gastown_units.errors import EX_CONFIG, ConfigError

BAD_DURATIONS = ["nan", "inf", "-inf", "-1", "1e308", "10x", "NaN", "infinity", "31d",
                 "2592001", "1e7", "", "  ", "1_000", "²", "5 m", "0x10", "--5"]
POSITIVE = [k for k in KNOBS if k.parse.__name__ == "_positive_seconds"]
ZERO_OK = [k for k in KNOBS if k.parse.__name__ == "_seconds"]
COUNTS = [k for k in KNOBS if k.parse.__name__ == "_count"]


@pytest.mark.parametrize("value", [*BAD_DURATIONS, "0", "0s", "0.0", "0ms"])
def test_interval_rejects_non_finite_zero_negative_and_absurd(value: str) -> None:
    with pytest.raises(ConfigError, match="^GT_INTERVAL: ") as info:
        Settings.load({"GT_INTERVAL": value})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("knob", [k.env for k in [*POSITIVE, *ZERO_OK]])
@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e308", "10x"])
def test_every_duration_knob_is_finite_and_bounded(knob: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{knob}: "):
        Settings.load({knob: value})


@pytest.mark.parametrize("knob", [k.env for k in POSITIVE])
def test_intervals_and_timeouts_must_be_positive(knob: str) -> None:
    with pytest.raises(ConfigError, match=f"^{knob}: must be greater than 0"):
        Settings.load({knob: "0"})


def test_knobs_where_zero_means_at_once_keep_zero() -> None:
    """Backoffs, delays and graces take 0 (the tmux tests run with them at 0)."""
    names = {k.field for k in ZERO_OK}
    assert {"restart_backoff", "spawn_delay", "sling_backoff", "kill_grace", "deacon_grace",
            "ladder_interval"} <= names
    settings = Settings.load({k.env: "0" for k in ZERO_OK})
    assert all(getattr(settings, field) == 0.0 for field in names)
    assert {"interval", "tmux_timeout", "bd_timeout", "gt_timeout", "git_timeout",
            "start_timeout", "sling_timeout", "lifecycle_interval", "lifecycle_max_age",
            "heartbeat_kill", "gupp_timeout"} <= {k.field for k in POSITIVE}


@pytest.mark.parametrize(("value", "seconds"), [
    ("90", 90.0), ("90s", 90.0), ("5m", 300.0), ("1h", 3600.0), ("250ms", 0.25),
    (" 2.5 ", 2.5), (".5s", 0.5), ("1e3", 1000.0), ("720h", MAX_SECONDS), ("1H", 3600.0),
])
def test_good_durations(value: str, seconds: float) -> None:
    assert Settings.load({"GT_INTERVAL": value}).interval == pytest.approx(seconds)


@pytest.mark.parametrize("knob", [k.env for k in COUNTS])
@pytest.mark.parametrize("value", ["0", "-1", "10001", "9" * 30, "1e3", "nan", "١", "2.5", ""])
def test_counts_are_bounded_whole_numbers(knob: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{knob}: "):
        Settings.load({knob: value})


def test_counts_accept_sane_values() -> None:
    assert Settings.load({"GT_WITNESS_MAX_WORKERS": " 12 "}).max_workers == 12
    assert Settings.load({"GT_CRASH_LOOP_RESTARTS": "10000"}).crash_loop_restarts == 10000


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 1e308])
def test_overrides_without_a_parser_are_checked_too(value: float) -> None:
    with pytest.raises(ConfigError, match="^GT_WITNESS_SPAWN_DELAY: "):
        Settings.load({}, overrides={"spawn_delay": value})


def _run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).parents[2]
    environ = {**os.environ, "PYTHONPATH": str(root), **(env or {})}
    return subprocess.run([sys.executable, "-m", "gastown_units", "run", "deacon-keeper",
                           "--once", "--town", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=60, env=environ,
                          cwd=tmp_path, check=False)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "1e308", "10x"])
def test_cli_bad_interval_exits_78_with_one_line(tmp_path: Path, value: str) -> None:
    flag = _run_cli(tmp_path, "--interval", value)
    env = _run_cli(tmp_path, env={"GT_INTERVAL": value})
    for result, where in ((flag, "'--interval'"), (env, "GT_INTERVAL")):
        assert result.returncode == EX_CONFIG, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and where in lines[0], result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
