"""Operator commands about one agent: ``attach``, ``capture``, ``logs``, ``hold``, ``release``.

AGENT is any spelling of the identity table (``gastown/witness``, ``gt-gastown-witness``,
``hq-deacon``, ``gastown/polecats/nux`` …), resolved against the town's rigs. Every command
reaches the town's tmux server whether it runs as the town's owner or as root
(:func:`gastown_units.ports.operator.operator_tmux`); ``attach`` as root runs the tmux
client as the owner (``runuser``), so the session sees the owner's client. Every program
gets an argv list; the argv builders are pure functions (tested without running them).

``hold AGENT`` writes the agent's hold file (:mod:`gastown_units.town.holds`): no service
starts, restarts, kills or shuts it down until ``release AGENT``. ``hold`` of an agent that
is already held changes nothing and exits 0; ``release`` of an agent that is not held says
so and exits 1 (a script can tell), a damaged hold file is released like any other.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import pwd
import shutil
import sys
from pathlib import Path

import click

from gastown_units.config import Settings
from gastown_units.errors import ConfigError, GastownError
from gastown_units.ports import runner
from gastown_units.ports.argv import checked_name
from gastown_units.ports.dialect_probe import town_naming
from gastown_units.ports.operator import Owner, operator_tmux, town_owner
from gastown_units.ports.tmux import Tmux
from gastown_units.runtime.events import BY_NAME, agent_fields
from gastown_units.runtime.journal_send import send_entry
from gastown_units.town.holds import hold_path, holds_dir, read_hold, remove_hold, write_hold
from gastown_units.town.identity import Identity, IdentityParser, Role
from gastown_units.town.layout import Town
from gastown_units.town.rigs import load_rigs, rig_prefixes

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
DEFAULT_CAPTURE_LINES = 50
MAX_LINES = 1_000_000

town_option = click.option(
    "--town", "town_root", type=click.Path(path_type=Path), default=None,
    help="Town root [env GT_TOWN_ROOT; default: found from the working directory]")


# --- resolving an agent -------------------------------------------------------------------
def resolve(agent: str, town_root: Path | None) -> tuple[Settings, Town, Identity]:
    """The settings, town and identity AGENT spells; GastownError in one line if none."""
    settings = Settings.load(overrides={"town_root": town_root})
    town = Town.open(settings.town_root)
    try:
        rigs = load_rigs(town)
        parser = IdentityParser.for_town(town, rigs, rig_prefixes(town, rigs),
                                         town_naming(settings, town, rigs))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return settings, town, identify(parser, agent, sorted(rigs))


def identify(parser: IdentityParser, agent: str, rigs: list[str]) -> Identity:
    """The identity of ``agent``; an unknown spelling or rig is one clear error."""
    try:
        who = parser.parse(agent)
    except ValueError as exc:
        raise GastownError(f"{exc} (e.g. gastown/witness, gt-gastown-nux, hq-deacon)"
                           ) from None
    if who.rig is not None and who.rig not in rigs:
        raise GastownError(f"{agent!r}: rig {who.rig!r} is not in the town's rigs.json "
                           f"(rigs: {', '.join(rigs) or 'none'})")
    checked_name("session", who.session)
    return who


# --- argv builders (pure) -----------------------------------------------------------------
def attach_argv(tmux: Tmux, session: str, owner: Owner, *, euid: int,
                runuser: str = "runuser") -> list[str]:
    """``tmux attach-session -t =SESSION`` on the town's server, as the owner when root."""
    argv = tmux.argv("attach-session", "-t", f"={checked_name('session', session)}")
    if euid != 0 or owner.uid == 0:
        return argv
    if owner.name.isdigit():
        raise GastownError(f"the town's owner (uid {owner.uid}) has no user name: "
                           "cannot run the tmux client as it")
    return [runuser, "-u", owner.name, "--", *argv]


def capture_argv(tmux: Tmux, session: str, lines: int) -> list[str]:
    """The last ``lines`` lines of the session's pane (``capture-pane -p -S -N``)."""
    if not 1 <= lines <= MAX_LINES:
        raise GastownError(f"lines must be 1 … {MAX_LINES}, got {lines}")
    # "=NAME:" (the session's window): tmux 3.3a's pane lookup fails on plain "=NAME"
    return tmux.argv("capture-pane", "-p", "-t", f"={checked_name('session', session)}:",
                     "-S", f"-{lines}")


def logs_argv(who: Identity, *, follow: bool = False, lines: int | None = None,
              journalctl: str = "journalctl") -> list[str]:
    """``journalctl GT_AGENT=<address>`` (and the session spelling some entries carry:
    two matches of one field are alternatives), newest last."""
    argv = [journalctl, f"GT_AGENT={who.address}"]
    if who.session != who.address:
        argv.append(f"GT_AGENT={who.session}")
    if follow:
        argv.append("-f")
    if lines is not None:
        if not 0 <= lines <= MAX_LINES:
            raise GastownError(f"lines must be 0 … {MAX_LINES}, got {lines}")
        argv += ["-n", str(lines)]
    return [*argv, "--no-pager", "-o", "short-iso"]


def units_of(who: Identity) -> list[str]:
    """The units that act on (and log about) ``who``."""
    rig = who.rig
    by_role = {
        Role.MAYOR: [],
        Role.DEACON: ["gastown-deacon-keeper.service"],
        Role.BOOT: ["gastown-deacon-keeper.service"],
        Role.WITNESS: [f"gastown-witness@{rig}.service"],
        Role.REFINERY: [f"gastown-refinery@{rig}.service"],
        Role.POLECAT: ["gastown-polecat-health.service", f"gastown-witness@{rig}.service"],
        Role.CREW: [],
    }
    lifecycle = [] if who.role is Role.BOOT else ["gastown-lifecycle-mail.service"]
    return [*by_role[who.role], *lifecycle]


# --- helpers ------------------------------------------------------------------------------
def operator_name(environ: dict[str, str] | None = None, euid: int | None = None) -> str:
    """Who runs the command: ``SUDO_USER`` behind sudo, else the effective user."""
    env = os.environ if environ is None else environ
    sudo = env.get("SUDO_USER", "").strip()
    if sudo:
        return sudo[:64]
    uid = os.geteuid() if euid is None else euid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return str(uid)


def journal_note(text: str, who: Identity, priority: int = 5, event: str | None = None
                 ) -> None:
    """One journal entry about ``who`` (GT_AGENT/GT_ROLE/GT_RIG), when journald runs."""
    if not JOURNAL_SOCKET.exists():
        return
    fields = {"MESSAGE": text, "SYSLOG_IDENTIFIER": "gastown-units", "PRIORITY": str(priority),
              **agent_fields(who)}
    if event is not None:
        fields.update(MESSAGE_ID=BY_NAME[event].message_id, GT_EVENT=event)
    with contextlib.suppress(OSError):
        send_entry(fields, str(JOURNAL_SOCKET))


def _exec(argv: list[str]) -> None:
    """Replace this process by ``argv`` (looked up on PATH); never returns."""
    binary = shutil.which(argv[0])
    if binary is None:
        raise GastownError(f"{argv[0]}: not found")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(binary, [argv[0], *argv[1:]])


def _session_or_fail(tmux: Tmux, who: Identity) -> None:
    try:
        present = tmux.has_session(who.session)
    except GastownError as exc:
        raise GastownError(f"cannot ask the town's tmux server about {who.session}: {exc}"
                           ) from None
    if not present:
        raise GastownError(f"{who.address} has no session {who.session} on the town's tmux "
                           "server (not running; see `gastown-units status`)")


def _give_to_owner(town: Town, path: Path) -> None:
    """As root, hand the hold file and its directory to the town's owner (who may release)."""
    if os.geteuid() != 0:
        return
    owner = town_owner(town)
    if owner.uid == 0:
        return
    gid = town.root.stat().st_gid
    for item in (holds_dir(town), path):
        os.chown(item, owner.uid, gid)


# --- the commands -------------------------------------------------------------------------
@click.command()
@click.argument("agent")
@town_option
def attach(agent: str, town_root: Path | None) -> None:
    """Attach this terminal to AGENT's tmux session (detach with the tmux prefix, then d).

    Run as root, the tmux client runs as the town's owner on the owner's server.
    """
    settings, town, who = resolve(agent, town_root)
    tmux, owner = operator_tmux(settings, town)
    _session_or_fail(tmux, who)
    if not sys.stdin.isatty():
        raise GastownError("attach needs a terminal: standard input is not a tty (run it "
                           "from an interactive shell; `gastown-units capture "
                           f"{who.address}` prints the screen instead)")
    _exec(attach_argv(tmux, who.session, owner, euid=os.geteuid()))


@click.command()
@click.argument("agent")
@click.option("-n", "--lines", default=DEFAULT_CAPTURE_LINES, show_default=True,
              type=click.IntRange(1, MAX_LINES), help="How many lines of history to print.")
@town_option
def capture(agent: str, lines: int, town_root: Path | None) -> None:
    """Print the last lines of AGENT's screen (its tmux pane, with scrollback)."""
    settings, town, who = resolve(agent, town_root)
    tmux, _owner = operator_tmux(settings, town)
    _session_or_fail(tmux, who)
    result = runner.run(capture_argv(tmux, who.session, lines), timeout=tmux.timeout)
    if not result.ok:
        raise GastownError(f"tmux capture-pane of {who.session} failed: "
                           f"{result.error_line()}")
    click.echo(result.stdout, nl=False)  # decoded with replacement characters (runner)


@click.command()
@click.argument("agent")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new entries.")
@click.option("-n", "--lines", type=click.IntRange(0, MAX_LINES), default=None,
              help="Only the last N entries.")
@town_option
def logs(agent: str, follow: bool, lines: int | None, town_root: Path | None) -> None:
    """Show the journal entries about AGENT (every entry carries GT_AGENT=<address>)."""
    _settings, _town, who = resolve(agent, town_root)
    argv = logs_argv(who, follow=follow, lines=lines)
    units = ", ".join(units_of(who)) or "-"
    click.echo(f"journal entries about {who.address} ({who.session}), logged by: {units}",
               err=True)
    if shutil.which("journalctl") is None:
        raise GastownError("journalctl not found: no systemd journal on this machine")
    _exec(argv)


@click.command()
@click.argument("agent")
@click.option("--reason", default="", metavar="TEXT", help="Why (shown in status and logs).")
@town_option
def hold(agent: str, reason: str, town_root: Path | None) -> None:
    """Hold AGENT: no service starts, restarts, kills or shuts it down until `release`.

    Take an agent down on purpose: hold it, then stop it by hand. Already held: unchanged.
    """
    _settings, town, who = resolve(agent, town_root)
    if "\x00" in reason or len(reason) > 500:
        raise GastownError("--reason: at most 500 characters, no NUL")
    existing = read_hold(town, who.session)
    if existing is not None and not existing.damaged:
        click.echo(f"{who.address} ({who.session}) is already {existing.describe()}; "
                   "unchanged")
        return
    try:
        made = write_hold(town, who.session, operator_name(), reason)
        _give_to_owner(town, hold_path(town, who.session))
    except OSError as exc:
        raise GastownError(f"cannot write the hold of {who.session}: {exc}") from None
    text = (f"{who.address} ({who.session}) is now {made.describe()}: no service starts, "
            f"restarts or kills it until `gastown-units release {who.address}`")
    click.echo(text)
    journal_note(text, who, event="agent-held")


@click.command()
@click.argument("agent")
@town_option
def release(agent: str, town_root: Path | None) -> None:
    """Release AGENT's hold: services keep it alive again from their next pass.

    Exits 1 when AGENT was not held.
    """
    _settings, town, who = resolve(agent, town_root)
    previous = read_hold(town, who.session)
    try:
        removed = remove_hold(town, who.session)
    except OSError as exc:
        raise GastownError(f"cannot remove the hold of {who.session}: {exc}") from None
    if not removed:
        raise GastownError(f"{who.address} ({who.session}) is not held")
    was = f" (was {previous.describe()})" if previous is not None else ""
    text = (f"released {who.address} ({who.session}){was} by {operator_name()}; services "
            "may start it again on their next pass")
    click.echo(text)
    journal_note(text, who, event="agent-released")


COMMANDS = (attach, capture, logs, hold, release)
