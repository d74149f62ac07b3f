"""``gastown-units setup --town PATH --user USER``: configure and start a town's units.

What an operator would do by hand (README, "Configure"), in one idempotent command:

1. find ``gt``, ``bd`` and the town's agent runtime (``claude`` unless the town's settings
   or ``GT_AGENT_COMMAND`` name another) on USER's PATH, the PATH of a login shell of USER;
2. set ``GT_TOWN_ROOT`` and ``PATH`` in ``/etc/gastown/gastown.conf`` (other lines, the
   commented knob list included, stay as they are);
3. write the owner drop-in (``gastown-.service.d/owner.conf``: ``User=USER``) and the drop-in
   that makes ``gastown-rigs.path`` watch the town's ``mayor/rigs.json``;
4. ``daemon-reload``, enable and start the town units and one ``gastown-rig@RIG.target``
   per rig of ``mayor/rigs.json``.

The plan (files with their new content, systemctl commands) is computed by pure functions
from what is on disk and what systemctl says; ``--dry-run`` prints it and changes nothing,
and a second run finds nothing to do and says so.
"""

from __future__ import annotations

import difflib
import os
import pwd
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click

from gastown_units.commands import systemctl
from gastown_units.errors import ConfigError, GastownError
from gastown_units.ports import runner
from gastown_units.town.agents import PRESETS, resolve_agent
from gastown_units.town.identity import Role
from gastown_units.town.layout import Town
from gastown_units.town.rigs import load_rigs

CONF = Path("/etc/gastown/gastown.conf")
UNIT_DIR = Path("/etc/systemd/system")
OWNER_DROPIN = Path("gastown-.service.d/owner.conf")
RIGS_PATH_DROPIN = Path("gastown-rigs.path.d/town.conf")
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

#: The town-wide units, in the order they are enabled and started. gastown-tmux.service
#: and gastown.target come with the others through Also=; naming them keeps the check of
#: a second run exact.
TOWN_UNITS = ("gastown-tmux.service", "gastown-deacon-keeper.service",
              "gastown-lifecycle-mail.service", "gastown-polecat-health.path",
              "gastown-polecat-health.timer", "gastown-rigs.path", "gastown.target")

_MARKER = "__GASTOWN_UNITS_PATH__="
_PATH_SCRIPT = f'printf "\\n{_MARKER}%s\\n" "$PATH"'
_USER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\$?", re.ASCII)
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_./:@%+,=~-]*", re.ASCII)


# --- pure parts ------------------------------------------------------------------------

def env_value(value: str) -> str:
    """``value`` as systemd's EnvironmentFile= reads it back: bare if plain, else quoted."""
    if "\n" in value or "\x00" in value:
        raise ConfigError(f"value {value!r} cannot be written to an environment file")
    if _PLAIN_VALUE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _key_re(key: str, commented: bool) -> re.Pattern[str]:
    lead = r"\s*#\s*" if commented else r"\s*(?:export\s+)?"
    return re.compile(lead + re.escape(key) + r"\s*=")


def conf_values(text: str) -> dict[str, str]:
    """The active ``KEY=VALUE`` settings of an environment file (last one wins, quotes
    removed), as systemd would read them; for finding the tools the operator named."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        key, sep, value = stripped.removeprefix("export ").partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def merge_conf(text: str, values: Mapping[str, str]) -> str:
    """``text`` with ``KEY=VALUE`` for each of ``values``, everything else kept.

    An active line of the key is replaced in place (later active duplicates, which would
    override it, are dropped); else the new line goes right below the key's commented
    knob line (``#KEY=...``), so that the documentation stays next to it; else at the end.
    """
    lines = text.splitlines()
    for key, value in values.items():
        line = f"{key}={env_value(value)}"
        active = [i for i, each in enumerate(lines) if _key_re(key, False).match(each)]
        if active:
            lines[active[0]] = line
            for index in reversed(active[1:]):
                del lines[index]
            continue
        commented = [i for i, each in enumerate(lines) if _key_re(key, True).match(each)]
        if commented:
            lines.insert(commented[0] + 1, line)
        else:
            lines.append(line)
    return "".join(f"{each}\n" for each in lines)


def rw_path(path: Path) -> str:
    """``path`` as one ``ReadWritePaths=`` entry: ``-`` (a missing town is the service's
    error to report, not a namespace failure), quoted if it holds blanks or quotes, ``%``
    escaped.

    >>> rw_path(Path("/home/alice/gt")), rw_path(Path("/srv/my town"))
    ('-/home/alice/gt', '"-/srv/my town"')
    """
    shown = str(path)
    if "\n" in shown or not path.is_absolute():
        raise ConfigError(f"cannot open {shown!r} to the units: not an absolute path on "
                          "one line")
    entry = "-" + shown.replace("%", "%%")
    if any(c in entry for c in " \t\"'\\"):
        entry = '"' + entry.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return entry


def owner_dropin(user: str, old: str | None = None, town: Path | None = None) -> str:
    """The owner drop-in: ``User=`` and the town in ``ReadWritePaths=`` (the supervisors'
    file system is read-only but for it, README "Sandbox"). An existing one (``old``)
    keeps every line but its ``User=``; a ``ReadWritePaths=`` line is added unless one
    already names the town."""
    rw = f"ReadWritePaths={rw_path(town)}" if town is not None else None
    if old is None:
        header = ("# Written by gastown-units setup: every gastown-*.service runs as the "
                  "town's owner.\n")
        if rw is None:
            return f"{header}[Service]\nUser={user}\n"
        return (f"{header}# The supervisors' sandbox is read-only but for the town (README "
                f"\"Sandbox\").\n[Service]\nUser={user}\n{rw}\n")
    lines = old.splitlines()
    users = [i for i, line in enumerate(lines) if re.match(r"\s*User\s*=", line)]
    if users:
        lines[users[-1]] = f"User={user}"
    else:
        lines += ["[Service]", f"User={user}"]
        users = [len(lines) - 1]
    if rw is not None and town is not None and not any(
            _names_path(line, town) for line in lines):
        lines.insert(users[-1] + 1, rw)
    return "".join(f"{line}\n" for line in lines)


def _names_path(line: str, path: Path) -> bool:
    """Whether a ``ReadWritePaths=`` line lists ``path`` (with or without ``-``/``+``)."""
    key, sep, value = line.partition("=")
    if not sep or key.strip() != "ReadWritePaths":
        return False
    try:
        entries = shlex.split(value)
    except ValueError:
        return False
    wanted = str(path).replace("%", "%%").rstrip("/") or "/"
    return any(e.lstrip("-+").rstrip("/") == wanted for e in entries)


def rigs_path_dropin(rigs_json: Path) -> str:
    """The drop-in that makes gastown-rigs.path watch the town's rigs.json."""
    shown = str(rigs_json)
    if "\n" in shown or not rigs_json.is_absolute():
        raise ConfigError(f"cannot watch {shown!r}: not an absolute path on one line")
    return ("# Written by gastown-units setup: sync the rig targets when the town's rigs "
            "change.\n[Path]\n" f"PathChanged={shown.replace('%', '%%')}\n")


def service_path(tools: Iterable[str], login_path: str, configured: str = "") -> str:
    """PATH for the services and agents: the tools' directories first, then the login
    PATH's absolute directories, then those of the PATH configured so far (an operator's
    additions stay), then the system directories; no duplicates. Feeding the result back
    in as ``configured`` gives the same PATH (a second setup changes nothing)."""
    dirs: list[str] = []
    for each in [*(str(Path(t).parent) for t in tools), *login_path.split(":"),
                 *configured.split(":"), *SYSTEM_PATH]:
        if each.startswith("/") and each not in dirs and "\n" not in each:
            dirs.append(each)
    return ":".join(dirs)


def find_tool(name: str, path: str, home: Path | None = None,
              executable: Callable[[Path], bool] | None = None) -> str | None:
    """Where ``name`` is on ``path`` (absolute ``name``: itself), or None. ``claude`` is
    also looked for where its installer puts it (``~/.claude/local/claude``)."""
    check = executable or (lambda p: p.is_file() and os.access(p, os.X_OK))
    if "/" in name:
        return name if name.startswith("/") and check(Path(name)) else None
    for each in path.split(":"):
        if each.startswith("/") and check(Path(each) / name):
            return str(Path(each) / name)
    if name == "claude" and home is not None:
        local = home / ".claude" / "local" / "claude"
        if check(local):
            return str(local)
    return None


@dataclass(frozen=True)
class FileChange:
    """A file to create or replace: its current text (None if missing) and the new one."""

    path: Path
    old: str | None
    new: str

    def describe(self) -> str:
        if self.old is None:
            body = "".join(f"    {line}\n" for line in self.new.splitlines())
            return f"create {self.path}:\n{body}"
        diff = difflib.unified_diff(self.old.splitlines(), self.new.splitlines(),
                                    f"{self.path} (now)", f"{self.path} (new)", lineterm="")
        return f"change {self.path}:\n" + "".join(f"    {line}\n" for line in diff)


@dataclass(frozen=True)
class UnitState:
    enabled: bool
    active: bool


@dataclass(frozen=True)
class Plan:
    files: tuple[FileChange, ...] = ()
    commands: tuple[tuple[str, ...], ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not self.files and not self.commands


def plan_setup(files: Mapping[Path, tuple[str | None, str]], units: Sequence[str],
               states: Mapping[str, UnitState],
               restarts: Mapping[Path, str] | None = None) -> Plan:
    """What setup has to do: the files whose content differs, then ``daemon-reload`` (if a
    file changes), ``enable`` of the units not enabled, a restart of the running unit
    that a changed file configures (``restarts``: path -> unit; gastown.target for any
    other file; gastown-tmux.service is never restarted: it would end every agent),
    ``start`` of the units not active."""
    changes = tuple(FileChange(path, old, new) for path, (old, new) in files.items()
                    if old != new)
    commands: list[tuple[str, ...]] = []
    notes: list[str] = []
    if changes:
        commands.append(("daemon-reload",))
    to_enable = [u for u in units if not states[u].enabled]
    if to_enable:
        commands.append(("enable", *to_enable))
    running = [u for u in units if states[u].active]
    # Supervisors running with the old settings: restarting gastown.target restarts every
    # one of them (they are PartOf= it), first if it is active, else once it is started.
    supervisors = [u for u in running if u != "gastown-tmux.service"]
    to_restart: list[str] = []
    for change in changes:
        unit = (restarts or {}).get(change.path, "gastown.target")
        if (unit == "gastown.target" and supervisors) or unit in running:
            to_restart.append(unit)
    if "gastown.target" in to_restart:  # restarts the rigs' path unit with it
        to_restart = ["gastown.target"]
    to_restart = list(dict.fromkeys(to_restart))
    to_start = [u for u in units if not states[u].active]
    if to_restart and all(u in running for u in to_restart):
        commands.append(("restart", *to_restart))
        to_restart = []
    if to_start:
        commands.append(("start", *to_start))
    if to_restart:
        commands.append(("restart", *to_restart))
    if "gastown.target" in (c[1] for c in commands if c[0] == "restart") \
            and "gastown-tmux.service" in running:
        notes.append("gastown-tmux.service keeps running with its old settings (a "
                     "restart would end every agent): restart it when convenient")
    return Plan(changes, tuple(commands), tuple(notes))


def agent_programs(town: Town, rigs: Iterable[str], agent_command: str | None) -> list[str]:
    """The program every role of the town runs, as a name to find on PATH (or a path)."""
    if agent_command:
        argv = shlex.split(agent_command)
        if not argv:
            raise ConfigError("GT_AGENT_COMMAND is empty")
        return [argv[0]]
    wanted: list[tuple[Role, str | None]] = [(Role.DEACON, None), (Role.BOOT, None)]
    for each in rigs:
        wanted += [(role, each) for role in (Role.WITNESS, Role.REFINERY, Role.POLECAT)]
    names: list[str] = []
    for role, rig in wanted:
        try:
            program = resolve_agent(town, role, rig, None)
        except ValueError as exc:
            raise ConfigError(f"cannot tell which agent runtime {role} runs: {exc}") from None
        name = PRESETS[program.name].argv[0] if program.name in PRESETS else program.argv[0]
        if name not in names:
            names.append(name)
    return names


# --- effects ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Owner:
    name: str
    uid: int
    home: Path
    shell: str


def owner_of(user: str) -> Owner:
    if not _USER_RE.fullmatch(user) or len(user) > 32:
        raise ConfigError(f"invalid user name {user!r}")
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"no such user: {user}") from None
    return Owner(user, entry.pw_uid, Path(entry.pw_dir), entry.pw_shell or "/bin/sh")


def _marked_path(stdout: str) -> str | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(_MARKER):
            return line[len(_MARKER):]
    return None


def login_path(owner: Owner, timeout: float = 30.0) -> str:
    """The PATH of a login shell of ``owner``: its own shell, else ``sh -l`` (an account
    whose shell is nologin still has a ~/.profile). Only a marked line counts, so that
    whatever a profile prints is ignored."""
    base_env = {"HOME": str(owner.home), "USER": owner.name, "LOGNAME": owner.name,
                "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    env_argv = ["env", "-i", *(f"{k}={v}" for k, v in base_env.items())]
    if os.geteuid() == 0:
        attempts = [["runuser", "-l", owner.name, "-c", _PATH_SCRIPT],
                    ["runuser", "-u", owner.name, "--", *env_argv, "/bin/sh", "-l", "-c",
                     _PATH_SCRIPT]]
    elif os.geteuid() == owner.uid:
        attempts = [[*env_argv, owner.shell, "-l", "-c", _PATH_SCRIPT],
                    [*env_argv, "/bin/sh", "-l", "-c", _PATH_SCRIPT]]
    else:
        raise ConfigError(f"run setup as root (or as {owner.name}, with --dry-run)")
    problems = []
    for argv in attempts:
        try:
            result = runner.run(argv, timeout=timeout, cwd=Path("/"))
        except GastownError as exc:
            problems.append(f"{argv[0]}: {exc}")
            continue
        found = _marked_path(result.stdout)
        if result.returncode == 0 and found:
            return found
        problems.append(f"{' '.join(argv[:3])}: exit {result.returncode} "
                        f"{' '.join(result.stderr.split())[:200]}")
    raise ConfigError(f"cannot read the PATH of a login shell of {owner.name}: "
                      + "; ".join(problems))


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    tmp = path.with_name(f".{path.name}.gastown-units-setup")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _states(units: Iterable[str]) -> dict[str, UnitState]:
    return {u: UnitState(systemctl.is_enabled(u), systemctl.is_active(u)) for u in units}


@dataclass(frozen=True)
class Desired:
    town: Town
    rigs: tuple[str, ...]
    files: dict[Path, tuple[str | None, str]]
    tools: dict[str, str]
    restarts: dict[Path, str]


def desired(town_root: Path, owner: Owner, conf: Path, unit_dir: Path,
            path_override: str | None) -> Desired:
    """Everything setup wants on disk, from the town, the owner's PATH and the files."""
    town = Town.open(town_root)
    try:
        rigs = tuple(load_rigs(town))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    conf_text = _read(conf)
    current = conf_values(conf_text or "")
    path = path_override if path_override is not None else login_path(owner)
    names = [current.get("GT_GT_BIN") or "gt", current.get("GT_BD_BIN") or "bd",
             *agent_programs(town, rigs, current.get("GT_AGENT_COMMAND"))]
    tools: dict[str, str] = {}
    for name in names:
        found = find_tool(name, path, owner.home)
        if found is None:
            raise ConfigError(f"{name} not found on the PATH of {owner.name} ({path}); "
                              f"install it, or name its directory with --path")
        tools[name] = found
    values = {"GT_TOWN_ROOT": str(town.root),
              "PATH": service_path(tools.values(), path, current.get("PATH", ""))}
    owner_text = _read(unit_dir / OWNER_DROPIN)
    files = {
        conf: (conf_text, merge_conf(conf_text or "", values)),
        unit_dir / OWNER_DROPIN: (owner_text, owner_dropin(owner.name, owner_text,
                                                          town.root)),
        unit_dir / RIGS_PATH_DROPIN: (_read(unit_dir / RIGS_PATH_DROPIN),
                                      rigs_path_dropin(town.rigs_json)),
    }
    return Desired(town, rigs, files, tools,
                   {unit_dir / RIGS_PATH_DROPIN: "gastown-rigs.path"})


def _units(rigs: Iterable[str]) -> list[str]:
    return [*TOWN_UNITS, *(f"gastown-rig@{rig}.target" for rig in rigs)]


@click.command("setup")
@click.option("--town", "town_root", required=True, type=click.Path(path_type=Path),
              help="The town root (holds mayor/town.json).")
@click.option("--user", "user", required=True, help="The town's owner: the services run "
              "as this user, and its login PATH is where gt, bd and the agent are found.")
@click.option("--dry-run", is_flag=True, help="Print every change and command; change "
              "nothing.")
@click.option("--path", "path_override", default=None, metavar="PATH",
              help="Look for the tools on this PATH instead of the user's login PATH.")
@click.option("--conf", type=click.Path(path_type=Path), default=CONF, show_default=True,
              hidden=True)
@click.option("--unit-dir", type=click.Path(path_type=Path), default=UNIT_DIR,
              show_default=True, hidden=True)
def setup_cmd(town_root: Path, user: str, dry_run: bool, path_override: str | None,
              conf: Path, unit_dir: Path) -> None:
    """Configure the town in /etc/gastown and enable and start its units (idempotent)."""
    owner = owner_of(user)
    if not dry_run and os.geteuid() != 0:
        raise ConfigError("setup changes /etc and runs systemctl: run it as root "
                          "(or try --dry-run)")
    want = desired(town_root, owner, conf, unit_dir, path_override)
    for name, where in want.tools.items():
        click.echo(f"found {where}" if name == where else f"found {name}: {where}")
    units = _units(want.rigs)
    plan = plan_setup(want.files, units, _states(units), want.restarts)
    if plan.empty:
        click.echo(f"nothing to change: {want.town.root} is set up for {owner.name} "
                   f"({len(want.rigs)} rig(s)), every unit enabled and active")
        return
    verb = "would " if dry_run else ""
    for change in plan.files:
        click.echo(f"{verb}{change.describe()}", nl=False)
        if not dry_run:
            _write(change.path, change.new)
    for command in plan.commands:
        click.echo(f"{verb}run: systemctl {' '.join(command)}")
        if not dry_run:
            try:
                systemctl.run(command)
            except GastownError as exc:
                raise GastownError(f"{exc} (see journalctl -xe)") from None
    for note in plan.notes:
        click.echo(f"note: {note}")
    if dry_run:
        click.echo("dry run: nothing changed")
    else:
        click.echo(f"done: {want.town.root} supervised by systemd as {owner.name}; "
                   "gastown-units status shows its agents")
