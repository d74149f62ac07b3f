"""``gastown-units unit-failed``: a permanent failure is logged and mailed once."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from gastown_units.commands.unit_failed import UnitEnd, handle, monitor_overrides, valid_unit
from gastown_units.ports.mail import Mail
from gastown_units.runtime.events import BY_NAME
from gastown_units.town.layout import Town
from tests.harness.keeper import REPO, service_env
from tests.harness.town import STANDINS, make_town

SHOW = """Id=gastown-witness@myrig.service
ActiveState=failed
SubState=failed
Result=start-limit-hit
ExecMainStatus=1
NRestarts=10
InvocationID=0123456789abcdef0123456789abcdef
"""


def mayor_mail(town: Path) -> list[str]:
    out = subprocess.run([str(STANDINS / "gt"), "mail", "inbox", "--identity", "mayor/",
                          "--json"], cwd=town, capture_output=True, text=True, timeout=30,
                         check=True).stdout
    return [m["subject"] for m in json.loads(out) or []]


def test_parse_and_judge() -> None:
    end = UnitEnd.parse("gastown-witness@myrig.service", SHOW)
    assert (end.active, end.result, end.status, end.restarts) == ("failed", "start-limit-hit",
                                                                  1, 10)
    assert end.permanent() and "start limit" in str(end.permanent())
    config = UnitEnd("u", "failed", "failed", "exit-code", 78)
    assert "78" in str(config.permanent())
    gave_up = UnitEnd("u", "failed", "failed", "exit-code", 1, 10).permanent()
    assert gave_up and "start limit" in gave_up  # systemd 252 keeps the last result
    assert UnitEnd("u", "activating", "auto-restart", "exit-code", 78).permanent() is None
    assert UnitEnd.parse("u", "garbage\nExecMainStatus=x\n").status is None
    over = monitor_overrides(UnitEnd("u", "failed", result="exit-code", status=1),
                             {"MONITOR_SERVICE_RESULT": "start-limit-hit",
                              "MONITOR_INVOCATION_ID": "abc"})
    assert (over.result, over.invocation) == ("start-limit-hit", "abc") and over.permanent()


def test_unit_names() -> None:
    assert valid_unit("gastown-witness@myrig.service")
    assert valid_unit("gastown-deacon-keeper.service")
    for bad in ("sshd.service", "gastown-x", "-gastown.service", "gastown-a@b c.service",
                "gastown-a;rm.service", "gastown-a/x.service", "gastown-a.socket"):
        assert not valid_unit(bad), bad


def test_logged_and_mailed_once_per_invocation_and_retried(tmp_path: Path) -> None:
    town_root = make_town(tmp_path / "town")
    town = Town.open(town_root)
    good = Mail(binary=str(STANDINS / "gt"), cwd=town_root, timeout=30)
    broken = Mail(binary=str(tmp_path / "no-gt"), cwd=town_root, timeout=30)
    end = UnitEnd.parse("gastown-witness@myrig.service", SHOW)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("gastown_units.commands.unit_failed")
    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        assert handle(end, town, broken) == 1  # logged; the mail is retried
        assert mayor_mail(town_root) == []
        assert handle(end, town, good) == 0
        assert handle(end, town, good) == 0  # the same failure again: nothing new
        again = UnitEnd.parse(end.unit, SHOW.replace("0123", "4567"))  # a new invocation
        assert handle(again, town, good) == 0
        restarting = UnitEnd(end.unit, "activating", "auto-restart", "exit-code", 1)
        assert handle(restarting, town, good) == 0  # systemd restarts it: not told
    finally:
        logger.removeHandler(handler)
    assert mayor_mail(town_root) == ["UNIT_FAILED: gastown-witness@myrig.service stays down"] * 2
    told = [r for r in records if vars(r).get("MESSAGE_ID") == BY_NAME["unit-failed"].message_id]
    assert len(told) == 2 and all(vars(r)["GT_UNIT"] == end.unit for r in told)


def test_the_command_asks_systemctl(tmp_path: Path) -> None:
    town_root = make_town(tmp_path / "town")
    systemctl = tmp_path / "systemctl"
    shown = SHOW.replace("start-limit-hit", "exit-code").replace("Status=1\n", "Status=78\n")
    systemctl.write_text(f"#!/bin/sh\ncat <<'EOF'\n{shown}EOF\n")
    systemctl.chmod(0o755)
    env = service_env({"GT_TOWN_ROOT": str(town_root), "GT_GT_BIN": str(STANDINS / "gt")})
    result = subprocess.run([sys.executable, "-m", "gastown_units", "unit-failed",
                             "--systemctl", str(systemctl), "gastown-witness@myrig.service"],
                            capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "failed for good" in result.stderr and "status 78" in result.stderr
    assert mayor_mail(town_root) == ["UNIT_FAILED: gastown-witness@myrig.service stays down"]
    bad = subprocess.run([sys.executable, "-m", "gastown_units", "unit-failed", "sshd.service"],
                         capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert bad.returncode == 78 and "not a gastown unit" in bad.stderr
    assert os.path.exists(town_root / "daemon" / "units" / "unit-failed.json")


def test_what_systemd_passes_is_enough_without_systemctl() -> None:
    from gastown_units.commands.unit_failed import from_monitor

    assert from_monitor("u", {}) is None
    config = from_monitor("u", {"MONITOR_SERVICE_RESULT": "exit-code",
                                "MONITOR_EXIT_CODE": "exited", "MONITOR_EXIT_STATUS": "78",
                                "MONITOR_INVOCATION_ID": "abc"})
    assert config is not None and config.permanent() and config.invocation == "abc"
    named = from_monitor("u", {"MONITOR_SERVICE_RESULT": "exit-code",
                               "MONITOR_EXIT_CODE": "exited", "MONITOR_EXIT_STATUS": "CONFIG"})
    assert named is not None and named.status == 78
    limit = from_monitor("u", {"MONITOR_SERVICE_RESULT": "start-limit-hit"})
    assert limit is not None and limit.permanent()
    killed = from_monitor("u", {"MONITOR_SERVICE_RESULT": "signal", "MONITOR_EXIT_CODE": "killed",
                                "MONITOR_EXIT_STATUS": "KILL"})
    assert killed is not None and killed.permanent()  # OnFailure=: systemd gave up
