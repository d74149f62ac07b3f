"""``gastown-units``: the command line the units run and operators use.

``main`` returns an exit code; expected failures print one line (no traceback) and exit
with their own code (78 for configuration errors, which units never restart on).
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from gastown_units import __version__
from gastown_units.config import KNOBS, Knob, Settings, default_of, load_with_sources
from gastown_units.config_files import CONFIG_ENV, DEFAULT_CONFIG
from gastown_units.errors import EX_CONFIG, EX_FAILURE, ConfigError, GastownError
from gastown_units.launch import SERVICES, run_unit
from gastown_units.ports.argv import checked_name
from gastown_units.ports.dialect_probe import town_naming
from gastown_units.ports.tmux import Tmux
from gastown_units.runtime.logs import setup_logging
from gastown_units.runtime.wake import EVENT_HOOK_INDEX, EVENT_HOOKS, hook_command
from gastown_units.town.identity import Identity, IdentityParser, Role
from gastown_units.town.layout import Town
from gastown_units.town.rigs import load_rigs, rig_prefixes

log = logging.getLogger("gastown_units")

def _knob_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """One ``--option`` per knob (except the town), documented with its env var and default."""
    for knob in reversed(KNOBS):
        if knob.field == "town_root":
            continue
        func = click.option(
            "--" + knob.field.replace("_", "-"), knob.field, default=None,
            callback=_parse_with(knob), metavar="VALUE",
            help=f"{knob.help} [env {knob.env}; default {default_of(knob.field)}]",
        )(func)
    return func


def _parse_with(knob: Knob) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def parse(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            return knob.parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return parse


# Commands whose modules are imported only when they run: a unit's service (and the
# polecat-health oneshot on the event path) starts without loading doctor, setup, ...
LAZY_COMMANDS = {
    "attach": "agents:attach", "capture": "agents:capture", "logs": "agents:logs",
    "hold": "agents:hold", "release": "agents:release", "doctor": "doctor:doctor",
    "unit-failed": "unit_failed:unit_failed", "resume": "resume:resume_cmd",
    "setup": "setup:setup_cmd", "sync-rigs": "sync_rigs:sync_rigs_cmd",
    "tmux-stop": "tmux_stop:tmux_stop_cmd",
}


class LazyGroup(click.Group):
    """A group that imports a command's module (``gastown_units.commands.*``) on use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            module, attr = LAZY_COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(f"gastown_units.commands.{module}"),
                              attr)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gastown-units")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              metavar="FILE",
              help=f"Read FILE instead of {DEFAULT_CONFIG} (and rigs/RIG.conf next to it) "
                   f"[env {CONFIG_ENV}; empty: no file].")
def cli(config_path: Path | None) -> None:
    """Supervise a Gas Town with systemd: one small service per job.

    Every command reads the configuration the units read: /etc/gastown/gastown.conf, then
    /etc/gastown/rigs/RIG.conf (rig services), then the environment, then flags.
    """
    if config_path is not None:
        os.environ[CONFIG_ENV] = str(config_path)


@cli.command()
@click.argument("service", type=click.Choice(sorted(SERVICES)))
@click.option("--town", "town_root", type=click.Path(path_type=Path), default=None,
              help="Town root [env GT_TOWN_ROOT; default: found from the working directory]")
@click.option("--rig", default=None, help="The rig (witness and refinery; the unit's %i).")
@click.option("--once", is_flag=True, help="Run one pass and exit (1 if an action failed).")
@click.option("--debug", is_flag=True, help="Log debug messages (every command run).")
@_knob_options
def run(service: str, town_root: Path | None, rig: str | None, once: bool, debug: bool,
        **knobs: Any) -> None:
    """Run SERVICE in the foreground (what the systemd units do)."""
    per_rig = SERVICES[service][1]
    if per_rig and not rig:
        raise click.UsageError(f"{service} needs --rig RIG")
    if not per_rig and rig:
        raise click.UsageError(f"{service} serves the whole town: no --rig")
    sys.exit(run_unit(service, rig=rig, once=once, debug=debug,
                      overrides={"town_root": town_root, **knobs}))


@cli.command("tmux-server")
def tmux_server() -> None:
    """Run the tmux server in the foreground (gastown-tmux.service), or adopt a running one.

    The server must not live in any supervisor's cgroup, or restarting that supervisor
    would kill every agent; this unit owns it. Same socket as the services use. A server
    the owner already runs on that socket is adopted instead (see runtime/tmux_host.py).
    """
    from gastown_units.runtime.notify import Notifier
    from gastown_units.runtime.tmux_host import (
        SCRUBBED_ENV,
        adopt,
        running_server,
        server_argv,
        socket_label,
    )

    setup_logging("gastown-tmux", role="tmux")
    settings = _town_server(Settings.load(), refuse_unknown=True)
    binary = shutil.which(settings.tmux_bin)
    if binary is None:
        raise ConfigError(f"{settings.tmux_bin}: not found")
    notifier = Notifier()  # takes NOTIFY_SOCKET and friends out of our environment
    socket = settings.tmux_socket
    pid = running_server(binary, socket, settings.tmux_timeout)
    if pid is not None:
        sys.exit(adopt(pid, binary, socket, settings.tmux_timeout, notifier.ready))
    notifier.status(f"running the tmux server (tmux -D) on {socket_label(socket)}")
    # The server's environment becomes every agent's: keep systemd's per-unit ids out.
    for name in SCRUBBED_ENV:
        os.environ.pop(name, None)
    os.execv(binary, server_argv(binary, socket))


def _town_server(settings: Settings, *, refuse_unknown: bool = False) -> Settings:
    """The settings with the town's tmux socket ([L]: ``<base>-<hash6>``, 2026 §3.0)."""
    from gastown_units.ports.dialect_probe import for_town
    from gastown_units.town.dialect import Dialect

    settled, found = for_town(settings)
    if found is not None and found.verdict.dialect is Dialect.UNKNOWN and refuse_unknown:
        raise ConfigError(f"cannot tell which Gas Town this is ({found.verdict.describe()}); "
                          "set GT_DIALECT=j or GT_DIALECT=l in /etc/gastown/gastown.conf")
    if found is not None:
        logging.getLogger(__name__).info("%s", found.line())
    return settled


@cli.command("tmux-ready")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait.")
@click.option("--event-file", type=click.Path(path_type=Path), default=None,
              help="When a session closes or a pane dies, global tmux hooks write "
                   "FILE.closed.SESSION (long-running services wake for their own "
                   "sessions) and create FILE.pending (the polecat-health .path unit's "
                   "trigger).")
def tmux_ready(timeout: float, event_file: Path | None) -> None:
    """Wait until the tmux server answers, then set the event hooks (ExecStartPost)."""
    settings = _town_server(Settings.load())
    tmux = Tmux(binary=settings.tmux_bin, socket=settings.tmux_socket,
                timeout=settings.tmux_timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            tmux.snapshot()
            break
        except GastownError as exc:
            if time.monotonic() >= deadline:
                raise GastownError(f"tmux server not ready after {timeout:g}s: {exc}") from None
        time.sleep(0.05)
    if event_file is not None:
        event_file.touch()
        for hook in EVENT_HOOKS:
            tmux.set_global_hook(f"{hook}[{EVENT_HOOK_INDEX}]", hook_command(event_file, hook))


@cli.command()
@click.argument("spelling")
@click.option("--town", "town_root", type=click.Path(path_type=Path), default=None,
              help="Town whose rigs and prefixes resolve the spelling [env GT_TOWN_ROOT].")
def identity(spelling: str, town_root: Path | None) -> None:
    """Show every spelling of the agent SPELLING (address, session, bead ID, ...)."""
    settings = Settings.load(overrides={"town_root": town_root})
    parser = IdentityParser()
    prefixes: dict[str, str] = {}
    if settings.town_root is not None or town_root is not None:
        town = Town.open(settings.town_root)
        try:
            rigs = load_rigs(town)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        prefixes = rig_prefixes(town, rigs)
        parser = IdentityParser.for_town(town, rigs, prefixes,
                                         town_naming(settings, town, rigs))
    try:
        who = parser.parse(spelling)
    except ValueError as exc:
        raise GastownError(str(exc)) from None
    rows = {
        "role": str(who.role), "rig": who.rig or "-", "name": who.name or "-",
        "address": who.address, "legacy": who.legacy, "session": who.session,
        "bead_id": who.bead_id(prefixes.get(who.rig or "")) or "-",
        "bd_actor": who.bd_actor, "gt_role": who.role_name,
    }
    for key, value in rows.items():
        click.echo(f"{key:9} {value}")


@cli.command()
@click.option("--town", "town_root", type=click.Path(path_type=Path), default=None,
              help="Town root [env GT_TOWN_ROOT; default: found from the working directory]")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
def status(town_root: Path | None, as_json: bool) -> None:
    """Show agents (state by the keepers' rule, PID, uptime, restarts, backoff, held) and
    units (active/failed, last STATUS=). Exit 0 only when everything expected runs: every
    supervisor unit active, the Deacon and each operational rig's Witness and Refinery
    running (or held), no zombie, no agent down in a crash loop. Works as root and as the
    town's owner."""
    import json

    from gastown_units.status import collect, render

    settings = Settings.load(overrides={"town_root": town_root})
    try:
        report = collect(settings)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        for line in render(report):
            click.echo(line)
    if report.problems:
        sys.exit(EX_FAILURE)


@cli.command("clear-backoff")
@click.argument("agent")
@click.option("--town", "town_root", type=click.Path(path_type=Path), default=None,
              help="Town root [env GT_TOWN_ROOT; default: found from the working directory]")
def clear_backoff_cmd(agent: str, town_root: Path | None) -> None:
    """Let AGENT be restarted again: after a crash loop, during backoff, after a shutdown.

    AGENT may be any spelling: gastown/nux, gt-gastown-nux, gt-gastown-polecat-nux, ...
    """
    from gastown_units.services.polecat_health import clear_backoff

    settings = Settings.load(overrides={"town_root": town_root})
    town = Town.open(settings.town_root)
    try:
        rigs = load_rigs(town)
        who = IdentityParser.for_town(town, rigs, rig_prefixes(town, rigs),
                                      town_naming(settings, town, rigs)).parse(agent)
    except ValueError as exc:
        raise GastownError(str(exc)) from None
    if who.rig is not None and who.rig not in rigs:
        raise GastownError(f"{agent}: no rig {who.rig!r} in {town.root / 'mayor' / 'rigs.json'}"
                           f" (rigs: {', '.join(sorted(rigs)) or 'none'})")
    from gastown_units.services.restart_tracker import Policy

    try:
        cleared = clear_backoff(town, who.session, Policy())
        if who.role is Role.DEACON:  # Gas Town's own entry (gastown-2026.md §6.10)
            from gastown_units.town.restart_state import clear_deacon

            cleared = clear_deacon(town.daemon_dir / "restart_state.json") or cleared
    except (ValueError, OSError) as exc:
        raise GastownError(f"cannot update the restart state: {exc}") from None
    from gastown_units.town.shutdown_marks import clear_mark

    released = clear_mark(town, who.session)
    if released:
        click.echo(f"removed the shutdown marker of {who.address} ({who.session}); "
                   "its keeper may start it again")
    if cleared:
        click.echo(f"cleared restart backoff of {who.address} ({who.session}); "
                   "the next polecat-health sweep may restart it")
    elif not released:
        click.echo(f"{who.address} ({who.session}) had no restart backoff and no shutdown "
                   "marker")
        if who.name is not None and not _agent_dir_exists(town, who):
            raise GastownError(f"{agent}: no such agent in rig {who.rig} (no directory "
                               f"{who.rig}/{'crew' if who.role is Role.CREW else 'polecats'}/"
                               f"{who.name})")


def _agent_dir_exists(town: Town, who: Identity) -> bool:
    sub = "crew" if who.role is Role.CREW else "polecats"
    return who.rig is not None and (town.rig_dir(who.rig) / sub / str(who.name)).is_dir()


@cli.command("config")
@click.option("--rig", default=None, help="Include /etc/gastown/rigs/RIG.conf (a rig's units).")
def show_config(rig: str | None) -> None:
    """Print every knob: environment variable, effective value, where it came from, default.

    The sources, later winning: the configuration file, the rig's file, the environment.
    """
    if rig is not None:
        checked_name("rig", rig)
    settings, sources = load_with_sources(rig=rig)
    for knob in KNOBS:
        value = getattr(settings, knob.field)
        click.echo(f"{knob.env}={'' if value is None else value}"
                   f"    # from {sources[knob.field]}; default: {default_of(knob.field)}; "
                   f"{knob.help}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code instead of raising."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="gastown-units",
                 standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EX_FAILURE
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return EX_FAILURE
    except click.BadParameter as exc:  # a bad knob value: one line, exit 78 (like the env)
        click.echo(f"gastown-units: {exc.format_message()}", err=True)
        return EX_CONFIG
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except GastownError as exc:
        click.echo(f"gastown-units: {exc}", err=True)
        return exc.exit_code
    return 0
