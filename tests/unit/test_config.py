from __future__ import annotations

from pathlib import Path

import pytest

from gastown_units.config import KNOBS, Settings, default_of
from gastown_units.errors import ConfigError


def test_defaults_follow_gas_town() -> None:
    s = Settings.load({})
    assert (s.start_timeout, s.deacon_grace, s.heartbeat_nudge, s.heartbeat_kill) == (
        60.0, 300.0, 900.0, 1800.0)
    assert s.tmux_socket is None and s.town_root is None and s.degraded is False


def test_environment_then_overrides() -> None:
    env = {"GT_TOWN_ROOT": "/srv/town", "GT_INTERVAL": "2m", "GT_TMUX_SOCKET": "gt",
           "GT_DEGRADED": "yes", "GT_KILL_GRACE": "250ms"}
    s = Settings.load(env, overrides={"interval": 5.0, "bd_bin": None})
    assert s.town_root == Path("/srv/town")
    assert s.interval == 5.0 and s.tmux_socket == "gt" and s.degraded is True
    assert s.kill_grace == pytest.approx(0.25) and s.bd_bin == "bd"


@pytest.mark.parametrize(("env", "message"), [
    ({"GT_INTERVAL": "soon"}, "GT_INTERVAL"),
    ({"GT_INTERVAL": "0"}, "GT_INTERVAL"),
    ({"GT_DEGRADED": "maybe"}, "GT_DEGRADED"),
    ({"GT_DEACON_HEARTBEAT_KILL": "5m"}, "GT_DEACON_HEARTBEAT_KILL"),
    ({"GT_BD_BIN": ""}, "GT_BD_BIN"),
    ({"GT_START_TIMEOUT": "-3"}, "GT_START_TIMEOUT"),
])
def test_bad_values_are_config_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(env)


def test_every_knob_is_in_the_packaged_conf() -> None:
    conf = (Path(__file__).parents[2] / "systemd" / "gastown.conf").read_text()
    for knob in KNOBS:
        assert f"#{knob.env}=" in conf, knob.env
        default = default_of(knob.field)
        if default not in (None, False) and knob.field not in ("interval",):
            shown = conf.split(f"#{knob.env}=")[1].split("\n")[0]
            assert shown and knob.parse(shown) == default, (knob.env, shown)
