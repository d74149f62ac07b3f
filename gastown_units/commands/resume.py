"""``gastown-units resume``: end the town-down mark that ``gt down`` left.

Also run by ``gastown-resume.service`` on every ``systemctl start gastown.target``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path

import click

from gastown_units.config import Settings
from gastown_units.errors import GastownError
from gastown_units.ports.locks import flock_holders, shutdown_in_progress, shutting_down_pid
from gastown_units.town.layout import Town
from gastown_units.town.town_down import clear_down, read_down

log = logging.getLogger(__name__)


def _ours(pid: int) -> bool:
    """Whether ``pid`` is one of our services (only those are woken)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
    except OSError:
        return False
    return any(w.endswith((b"gastown-units", b"gastown_units")) for w in words[:4])


def wake_services(town: Town) -> list[int]:
    """SIGHUP (pass now) to every service of ours that holds the town lock."""
    woken = []
    for pid in flock_holders(town.daemon_lock, "READ"):
        if pid != os.getpid() and _ours(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGHUP)
                woken.append(pid)
    return woken


def resume(town: Town) -> str:
    """Clear the mark; the line to print. GastownError while ``gt down`` still runs."""
    if shutdown_in_progress(town.shutdown_lock) or shutting_down_pid(town.shutting_down):
        raise GastownError("gt down is still running (daemon/shutdown.lock is held): "
                           "resume once it is done")
    mark = read_down(town)
    if mark is None:
        return "the town is not marked down: nothing to resume"
    clear_down(town)
    woken = wake_services(town)
    was = (f"down since {mark.when()}: {mark.reason}" if mark.readable
           else f"marked down ({mark.reason})")
    return (f"town resumed (it was {was}); the services start its agents again"
            f" ({len(woken)} service(s) woken)")


@click.command("resume")
@click.option("--town", "town_root", type=click.Path(path_type=Path), default=None,
              help="Town root [env GT_TOWN_ROOT; default: found from the working directory]")
@click.option("--if-configured", is_flag=True,
              help="Do nothing (exit 0) when no town is configured (gastown-resume.service: "
                   "gastown.target may be started before setup).")
def resume_cmd(town_root: Path | None, if_configured: bool) -> None:
    """End the town-down mark left by `gt down`: agents are started again.

    While the mark exists (written when a service saw `gt down` at work, or its
    daemon/daemon.lock unlinked), no service starts, restarts or kills an agent. `gt up`
    also ends it, and so does `systemctl start gastown.target`.
    """
    settings = Settings.load(overrides={"town_root": town_root})
    if if_configured and settings.town_root is None:
        click.echo("no town configured (GT_TOWN_ROOT): nothing to resume")
        return
    town = Town.open(settings.town_root)
    try:
        line = resume(town)
    except OSError as exc:
        raise GastownError(f"cannot remove the town-down mark: {exc}") from None
    click.echo(line)
