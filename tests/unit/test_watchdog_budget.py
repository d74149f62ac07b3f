"""Design rule 2 / issue 7 §5: no single tool call may outrun a unit's watchdog.

Every tool timeout (tmux, bd, gt, git) and each wait between two pings inside a sequence
(the kill grace) must fit in half of the ``WatchdogSec`` of every unit that runs a service,
so that a hanging tool is reported as "unknown" by our own timeout, never by a watchdog kill.
"""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from gastown_units.config import KNOB_BY_FIELD, Settings, _seconds

UNITS = Path(__file__).resolve().parents[2] / "systemd"
TIMEOUT_KNOBS = ("tmux_timeout", "bd_timeout", "gt_timeout", "git_timeout", "kill_grace")


def watchdogs() -> dict[str, float]:
    found = {}
    for path in sorted(UNITS.glob("*.service")):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read(path)
        value = parser.get("Service", "WatchdogSec", fallback=None)
        if value:
            found[path.name] = _seconds(value)
    return found


def packaged_values() -> dict[str, float]:
    """Knobs that the packaged gastown.conf sets (uncommented) override the defaults."""
    values = {}
    env_to_field = {k.env: k.field for k in KNOB_BY_FIELD.values()}
    for line in (UNITS / "gastown.conf").read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not line.lstrip().startswith("#") and env_to_field.get(key) in TIMEOUT_KNOBS:
            values[env_to_field[key]] = _seconds(value)
    return values


def test_every_long_running_unit_has_a_watchdog() -> None:
    assert set(watchdogs()) == {
        "gastown-deacon-keeper.service", "gastown-lifecycle-mail.service",
        "gastown-witness@.service", "gastown-refinery@.service"}


@pytest.mark.parametrize("knob", TIMEOUT_KNOBS)
def test_timeout_fits_half_of_every_watchdog(knob: str) -> None:
    value = packaged_values().get(knob, getattr(Settings(), knob))
    for unit, watchdog in watchdogs().items():
        assert value <= watchdog / 2, (
            f"{KNOB_BY_FIELD[knob].env}={value:g}s exceeds half of {unit}'s "
            f"WatchdogSec={watchdog:g}s")
