"""``gastown-units unit-failed UNIT``: tell the operator when a supervisor fails for good.

Every supervisor unit has ``OnFailure=gastown-failed@%n.service``; that oneshot runs this
command with the failed unit's name. It asks systemd (``systemctl show``, or the
``MONITOR_*`` variables systemd passes) how the unit ended. systemd starts OnFailure= units
only once a unit is *failed*, not while it auto-restarts, so for our supervisors (all
``Restart=``) a failed unit is a permanent failure: the start limit hit (systemd 252 then
keeps the last ``Result``, e.g. ``exit-code``, and logs "Start request repeated too
quickly"), or exit status 78 (a configuration error, which ``RestartPreventExitStatus=78``
never restarts). It is logged once as the
``unit-failed`` event (its ``MESSAGE_ID`` explains it in ``journalctl -x``) and mailed once
to ``mayor/``. "Once" is per invocation of the failed unit, recorded in
``daemon/units/unit-failed.json`` of the town; a mail that cannot be sent exits 1, and the
unit's ``Restart=on-failure`` tries again later. Anything else (a failure systemd is about
to restart) is only noted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import click

from gastown_units.config import Settings
from gastown_units.errors import EX_CONFIG, ConfigError, GastownError
from gastown_units.ports import runner
from gastown_units.ports.mail import Mail
from gastown_units.runtime.events import log_event
from gastown_units.runtime.logs import setup_logging
from gastown_units.town.layout import Town
from gastown_units.town.names import valid_name
from gastown_units.town.unit_state import load_state, save_state, state_path

log = logging.getLogger(__name__)

PROPERTIES = ("Id", "ActiveState", "SubState", "Result", "ExecMainStatus", "NRestarts",
              "InvocationID")
SYSTEMCTL_TIMEOUT = 30.0


@dataclass(frozen=True)
class UnitEnd:
    """How a unit ended, from ``systemctl show``."""

    unit: str
    active: str = ""
    sub: str = ""
    result: str = ""
    status: int | None = None
    restarts: int = 0
    invocation: str = ""

    @classmethod
    def parse(cls, unit: str, text: str) -> UnitEnd:
        """``systemctl show -p …`` output: ``Key=value`` lines."""
        props: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                props[key.strip()] = value.strip()
        return cls(unit, props.get("ActiveState", ""), props.get("SubState", ""),
                   props.get("Result", ""), _int(props.get("ExecMainStatus")),
                   _int(props.get("NRestarts")) or 0, props.get("InvocationID", ""))

    def permanent(self) -> str | None:
        """Why the unit stays down for good, or None (systemd will restart it)."""
        if self.active != "failed":
            return None
        if self.result == "start-limit-hit":
            return (f"it hit its start limit after {self.restarts} restart(s): systemd "
                    "does not start it again by itself")
        if self.status == EX_CONFIG:
            return ("it exited with status 78 (a configuration error), which is never "
                    "restarted")
        status = self.status if self.status is not None else "unknown"
        return (f"systemd gave up restarting it (its start limit: it failed too often in a "
                f"row; last result {self.result or 'unknown'}, exit status {status}, "
                f"{self.restarts} restart(s))")


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def valid_unit(unit: str) -> bool:
    """A gastown unit name: ``gastown-<name>[@<instance>].<type>``, nothing to misread."""
    base, dot, kind = unit.rpartition(".")
    if not dot or kind not in ("service", "timer", "path", "target"):
        return False
    name, _, instance = base.partition("@")
    return name.startswith("gastown-") and valid_name(name) and \
        (not instance or valid_name(instance.replace(".", "_")))


def show(unit: str, systemctl: str = "systemctl") -> UnitEnd:
    result = runner.run([systemctl, "show", *(f"-p{p}" for p in PROPERTIES), "--", unit],
                        timeout=SYSTEMCTL_TIMEOUT)
    if not result.ok:
        raise GastownError(f"systemctl show {unit} failed: {result.error_line()}")
    return UnitEnd.parse(unit, result.stdout)


def from_monitor(unit: str, env: Mapping[str, str]) -> UnitEnd | None:
    """The failed unit's end as systemd (≥ 251) tells its OnFailure= unit, or None.

    Enough where ``systemctl show`` cannot ask (a town owner without a D-Bus to talk to):
    an OnFailure= unit runs only once the unit is failed (not while it auto-restarts).
    """
    result = env.get("MONITOR_SERVICE_RESULT")
    if not result:
        return None
    text = env.get("MONITOR_EXIT_STATUS", "")
    status = EX_CONFIG if text == "CONFIG" else \
        _int(text) if env.get("MONITOR_EXIT_CODE") == "exited" else None
    return UnitEnd(unit, "failed", "failed", result, status, 0,
                   env.get("MONITOR_INVOCATION_ID", ""))


def monitor_overrides(end: UnitEnd, env: Mapping[str, str]) -> UnitEnd:
    """systemd (≥ 251) passes the failed unit's end to its OnFailure= unit: prefer that."""
    invocation = env.get("MONITOR_INVOCATION_ID") or end.invocation
    return UnitEnd(end.unit, end.active, end.sub,
                   env.get("MONITOR_SERVICE_RESULT") or end.result, end.status,
                   end.restarts, invocation)


def handle(end: UnitEnd, town: Town | None, mail: Mail | None) -> int:
    """Log and mail a permanent failure once; the exit code (1: the mail must be retried)."""
    why = end.permanent()
    fields = {"GT_UNIT": end.unit}
    if why is None:
        log.info("%s failed (%s, %s); systemd restarts it: nothing to report", end.unit,
                 end.result or "unknown result", end.sub or end.active, extra=fields)
        return 0
    key = end.invocation or f"{end.result}:{end.status}:{end.restarts}"
    path = state_path(town, "unit-failed") if town else None
    state = load_state(path) if path else {}
    told = state.get(end.unit) if isinstance(state.get(end.unit), dict) else {}
    assert isinstance(told, dict)
    if told.get("key") != key:
        told = {"key": key, "logged": False, "mailed": False}
    if not told["logged"]:
        log_event("unit-failed", "%s failed for good: %s. Read `journalctl -u %s`, repair the "
                  "cause, then `systemctl reset-failed %s && systemctl start %s`", end.unit,
                  why, end.unit, end.unit, end.unit, fields=fields, logger=log)
        told["logged"] = True
    code = 0
    if not told["mailed"]:
        if mail is None:
            log.error("cannot mail mayor/ about %s: no town", end.unit, extra=fields)
            code = 1
        else:
            try:
                mail.send("mayor/", f"UNIT_FAILED: {end.unit} stays down",
                          f"The Gas Town supervisor {end.unit} failed for good: {why}.\n\n"
                          f"Result: {end.result or 'unknown'}, exit status: "
                          f"{end.status if end.status is not None else 'unknown'}, "
                          f"restarts: {end.restarts}.\n\n"
                          f"Read why: journalctl -u {end.unit} -n 50\n"
                          f"Then: systemctl reset-failed {end.unit} && "
                          f"systemctl start {end.unit}")
                told["mailed"] = True
            except GastownError as exc:
                log.error("could not mail mayor/ about %s (retried later): %s", end.unit,
                          exc, extra=fields)
                code = 1
    if path:
        state[end.unit] = told
        try:
            save_state(path, state)
        except OSError as exc:
            log.error("cannot save %s: %s", path, exc, extra=fields)
    return code


@click.command("unit-failed", hidden=True)
@click.argument("unit")
@click.option("--systemctl", "systemctl", default="systemctl", show_default=True,
              help="The systemctl binary (tests).")
def unit_failed(unit: str, systemctl: str) -> None:
    """Report UNIT (the OnFailure= caller) if it failed for good: journal and mayor/ mail."""
    setup_logging("gastown-failed", role="supervisor")
    if not valid_unit(unit):
        raise ConfigError(f"not a gastown unit name: {unit!r}")
    try:
        end = monitor_overrides(show(unit, systemctl), os.environ)
    except GastownError as exc:
        told = from_monitor(unit, os.environ)
        if told is None:
            raise
        log.info("systemctl show %s unusable (%s): judging by what systemd passed", unit, exc)
        end = told
    settings = Settings.load()
    town: Town | None = None
    mail: Mail | None = None
    try:
        town = Town.open(settings.town_root)
        mail = Mail(binary=settings.gt_bin, cwd=town.root, timeout=settings.gt_timeout)
    except (GastownError, OSError, ValueError) as exc:
        log.error("town unusable, %s is reported to the journal only: %s", unit, exc)
    code = handle(end, town, mail)
    if code:
        raise SystemExit(code)
