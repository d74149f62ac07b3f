"""The ``gastown-units`` command's entry point, and how a unit's service is run.

The polecat sweep is started by systemd on every tmux event (``run polecat-health
--once``), so its start is on the path from an agent's death to its restart: that exact
command line is run here without importing the command-line framework or any other
command's module. Every other command line goes to :mod:`gastown_units.cli`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gastown_units.errors import GastownError

if TYPE_CHECKING:
    from gastown_units.config import Settings
    from gastown_units.runtime.loop import Service

# service name -> (GT_ROLE of its journal entries, whether it serves one rig)
SERVICES = {"deacon-keeper": ("deacon", False), "witness": ("witness", True),
            "refinery": ("refinery", True), "polecat-health": ("polecat", False),
            "lifecycle-mail": ("deacon", False)}

#: The polecat sweep's command lines (its units' ExecStart=, with or without --debug).
_SWEEP = ("run", "polecat-health", "--once")


def service_of(name: str, settings: Settings, rig: str | None) -> Service:
    """Import only the service that runs (each process runs exactly one)."""
    if name == "deacon-keeper":
        from gastown_units.services.deacon_keeper import DeaconKeeper
        return DeaconKeeper(settings)
    if name == "polecat-health":
        from gastown_units.services.polecat_health import PolecatHealth
        return PolecatHealth(settings)
    if name == "lifecycle-mail":
        from gastown_units.services.lifecycle_mail import LifecycleMail
        return LifecycleMail(settings)
    assert rig is not None
    if name == "witness":
        from gastown_units.services.witness import Witness
        return Witness(settings, rig)
    from gastown_units.services.refinery import Refinery
    return Refinery(settings, rig)


def run_unit(service: str, *, rig: str | None, once: bool, debug: bool,
             overrides: Mapping[str, Any]) -> int:
    """Run ``service`` as its unit does: its journal identity, the settings (files,
    environment, then ``overrides``), then the service loop; returns the exit code."""
    from gastown_units.config import Settings
    from gastown_units.runtime.logs import setup_logging
    from gastown_units.runtime.loop import run_service

    role = SERVICES[service][0]
    identifier = f"gastown-{service}@{rig}" if rig else f"gastown-{service}"
    setup_logging(identifier, role=role, rig=rig, debug=debug)
    settings = Settings.load(overrides=overrides, rig=rig)
    interval = settings.lifecycle_interval if service == "lifecycle-mail" else settings.interval
    return run_service(service_of(service, settings, rig), interval=interval, once=once,
                       event_file=settings.event_file)


def is_sweep(args: Sequence[str]) -> bool:
    """Whether ``args`` is the polecat sweep's command line (``--debug`` allowed too).

    >>> is_sweep(["run", "polecat-health", "--once"]), is_sweep(["run", "polecat-health"])
    (True, False)
    >>> is_sweep(["run", "polecat-health", "--debug", "--once"])
    True
    """
    rest = list(args[2:])
    if "--debug" in rest:
        rest.remove("--debug")
    return tuple(args[:2]) == _SWEEP[:2] and rest == ["--once"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code instead of raising."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not is_sweep(args):
        from gastown_units.cli import main as cli_main
        return cli_main(args)
    try:
        return run_unit("polecat-health", rig=None, once=True, debug="--debug" in args,
                        overrides={"town_root": None})
    except GastownError as exc:  # what the command line would print (a bad knob: 78)
        print(f"gastown-units: {exc}", file=sys.stderr)
        return exc.exit_code

