"""``gastown-units doctor``: gather the facts (files, systemctl, tmux, processes), then
judge them with the pure checks of :mod:`gastown_units.doctor_checks`.

Read-only: nothing here writes, renames or starts anything (every tmux call passes
``-N``; the restart state is read without setting a damaged file aside). Every gathering
step is contained: a step that fails becomes a fact with its reason, never a traceback.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import click

from gastown_units.config import Settings
from gastown_units.config_files import (
    DEFAULT_CONFIG,
    SYSTEMD_DEFAULT_PATH,
    config_file,
    configured_path,
    layers,
    rig_config_file,
)
from gastown_units.doctor_checks import (
    DAEMON_UNITS,
    RIG_SUPERVISORS,
    SANDBOXED_HELPERS,
    SUPERVISORS,
    TMUX_UNIT,
    Backoff,
    Check,
    Facts,
    TmuxFacts,
    Tool,
    Unit,
    UserDaemonUnit,
    exit_code,
    is_gt_daemon,
    parse_exposure,
    run_checks,
)
from gastown_units.errors import EX_CONFIG, ConfigError, GastownError
from gastown_units.ports import runner
from gastown_units.ports.dialect_probe import TownDialect, resolve
from gastown_units.town.identity import J_NAMING
from gastown_units.town.jsonfile import DamagedFile, parse_time, read_json_object
from gastown_units.town.layout import Town

T = TypeVar("T")

SYSTEMD_DIR = Path("/run/systemd/system")
TIMEOUT = 10.0
MAX_WALK = 20_000  # entries of daemon/ looked at for *.bad files


def _contained(step: Callable[[], T], fallback: Callable[[str], T]) -> T:
    """``step()``, or ``fallback(reason)`` when it raises anything at all."""
    try:
        return step()
    except Exception as exc:  # noqa: BLE001 - a failing gather is a ✗, never a traceback
        text = str(exc).strip().splitlines()
        return fallback(text[0] if text else type(exc).__name__)


def _systemctl(*args: str) -> runner.Result:
    return runner.run(["systemctl", "--no-pager", *args], timeout=TIMEOUT)


def units_path(environ: Mapping[str, str], systemd: bool, rig: str | None = None
               ) -> tuple[str, str]:
    """The PATH the units run with and where it comes from: the configuration files'
    PATH (``EnvironmentFile=``; a rig's units also read ``rigs/<rig>.conf``), else the
    service manager's, else systemd's default. The caller's own PATH is not the units'."""
    configured = configured_path(environ, rig)
    if configured is not None:
        return configured[0], f"PATH in {configured[1]}"
    if systemd:
        try:
            result = _systemctl("show-environment")
            for line in result.stdout.splitlines():
                if result.ok and line.startswith("PATH="):
                    return line[5:], "systemd's default (no PATH in the configuration)"
        except GastownError:
            pass
    return SYSTEMD_DEFAULT_PATH, "systemd's default (no PATH in the configuration)"


@dataclass(frozen=True)
class Context:
    """What one kind of unit sees: the town's units, or one rig's (with its rig file)."""

    rig: str | None
    settings: Settings
    path: str
    source: str


def contexts(settings: Settings, rigs: tuple[str, ...], town_path: tuple[str, str],
             environ: Mapping[str, str], systemd: bool) -> tuple[list[Context], list[str]]:
    """The town's context, and one per rig that has its own ``rigs/<rig>.conf``; the
    errors of rig files that cannot be read."""
    found = [Context(None, settings, *town_path)]
    errors = []
    town_file = config_file(environ)
    for rig in rigs:
        if not rig_config_file(rig, town_file or DEFAULT_CONFIG).exists():
            continue
        try:
            rig_settings = Settings.load(rig=rig, overrides={"town_root": settings.town_root})
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        found.append(Context(rig, rig_settings, *units_path(environ, systemd, rig)))
    return found, errors


def find_tool(command: str, path: str, home: Path | None = None) -> str | None:
    """Where ``command`` resolves for a unit with ``path``; a path must be executable."""
    if "/" in command:
        target = Path(command)
        if not target.is_absolute() and home is not None:
            target = home / target
        return str(target) if target.is_file() and os.access(target, os.X_OK) else None
    return shutil.which(command, path=path)


def gather_tools(views: list[Context], town: Town | None, rigs: tuple[str, ...],
                 home: Path | None) -> tuple[tuple[Tool, ...], str]:
    """gt, bd, tmux and each role's runtime, where the units that run them find them: the
    town's units, and a rig's units with their own rig file (shown only where they
    differ from the town's)."""
    tools: list[Tool] = []
    base = views[0]
    own = {v.rig: v for v in views[1:]}
    for view in views:
        suffix = f" (rig {view.rig})" if view.rig else ""
        for label, command, knob in (("gt", view.settings.gt_bin, "GT_GT_BIN"),
                                     ("bd", view.settings.bd_bin, "GT_BD_BIN"),
                                     ("tmux", view.settings.tmux_bin, "GT_TMUX_BIN")):
            if view.rig and (command, view.path) == (getattr(base.settings, f"{label}_bin"),
                                                     base.path):
                continue
            tools.append(Tool(label + suffix, command, knob, find_tool(command, view.path),
                              path=view.path, path_source=view.source))
    if town is None:
        return tuple(tools), ""
    from gastown_units.town.agents import PRESETS, resolve_agent
    from gastown_units.town.identity import Role

    roles: list[tuple[str, Role, str | None, Context]] = [
        ("deacon", Role.DEACON, None, base), ("boot", Role.BOOT, None, base)]
    for rig in rigs:
        roles += [(f"{rig}/{role}", Role(role), rig, own.get(rig, base))
                  for role in ("witness", "refinery")]
        roles.append((f"{rig}/polecat", Role.POLECAT, rig, base))  # polecat-health starts it
    runtimes: dict[tuple[str, str, str], list[str]] = {}
    knobs: dict[str, str] = {}
    errors: dict[str, list[str]] = {}  # why -> the roles it stops
    for who, role, of_rig, view in roles:
        try:
            agent = resolve_agent(town, role, of_rig, view.settings.agent_command)
        except ValueError as exc:
            errors.setdefault(str(exc), []).append(who)
            continue
        command = "claude" if agent.name == "claude" else agent.argv[0]
        runtimes.setdefault((command, view.path, view.source), []).append(who)
        knobs[command] = ("GT_AGENT_COMMAND" if agent.name == "override"
                          or agent.name in PRESETS else
                          f"agents.{agent.name}.command in settings/config.json")
    for (command, path, source), users in runtimes.items():
        found = find_tool(command, path)
        if found is None and command == "claude" and home is not None:
            local = home / ".claude" / "local" / "claude"  # where the keepers look next
            found = str(local) if local.is_file() and os.access(local, os.X_OK) else None
        tools.append(Tool(f"runtime {Path(command).name}", command, knobs[command], found,
                          tuple(users), path=path, path_source=source))
    return tuple(tools), "; ".join(f"{why} (for {', '.join(who[:4])}"
                                   f"{' and more' if len(who) > 4 else ''})"
                                   for why, who in list(errors.items())[:3])


def parse_show(text: str) -> dict[str, Unit]:
    """``systemctl show -p Id,LoadState,...`` of several units (blank-line separated)."""
    units: dict[str, Unit] = {}
    for block in text.split("\n\n"):
        props = dict(line.partition("=")[::2] for line in block.splitlines() if "=" in line)
        name = props.get("Id", "")
        if name:
            units[name] = Unit(name, props.get("LoadState", ""), props.get("ActiveState", ""),
                               props.get("SubState", ""), props.get("Result", ""),
                               props.get("User", ""),
                               writable=props.get("ReadWritePaths", ""))
    return units


def gather_units(rigs: tuple[str, ...]) -> dict[str, Unit]:
    listed = _systemctl("list-units", "--all", "--plain", "--no-legend", "--full", "gastown*")
    if not listed.ok:
        raise GastownError(f"systemctl list-units: {listed.error_line()}")
    names = {line.split()[0] for line in listed.stdout.splitlines() if line.split()}
    names.discard("●")
    wanted = {TMUX_UNIT, *DAEMON_UNITS}
    for rig in rigs:
        wanted |= {f"gastown-rig@{rig}.target", *(u.format(rig=rig) for u in RIG_SUPERVISORS)}
    shown = _systemctl("show", "-p", "Id,LoadState,ActiveState,SubState,Result,User,"
                       "ReadWritePaths", "--",
                       *sorted(names | wanted))
    if not shown.ok:
        raise GastownError(f"systemctl show: {shown.error_line()}")
    units = parse_show(shown.stdout)
    for name in sorted(wanted):
        state = _systemctl("is-enabled", "--", name)
        enabled = state.stdout.strip().splitlines()[0] if state.stdout.strip() else ""
        units[name] = Unit(**{**units.get(name, Unit(name)).__dict__, "enabled": enabled})
    return units


def _dialect(settings: Settings, town: Town) -> TownDialect:
    from gastown_units.town.rigs import load_rigs

    try:
        rigs = load_rigs(town)
    except ValueError:
        rigs = {}
    return resolve(town, rigs, settings)


def gather_tmux(settings: Settings, town: Town, environ: Mapping[str, str]) -> TmuxFacts:
    from gastown_units.ports.operator import operator_tmux, socket_file
    from gastown_units.ports.tmux import ServerDown
    from gastown_units.services.split_town import (
        SplitTownGuard,
        foreign_servers,
        in_town,
        socket_dir,
    )

    tmux, owner = operator_tmux(settings, town, dict(environ))
    where = tmux.socket_path or socket_file(tmux.socket, owner.uid,
                                            environ.get("TMUX_TMPDIR"))
    others: dict[str, frozenset[str] | None] = {}
    guard = SplitTownGuard(binary=settings.tmux_bin, socket=tmux.socket,
                           town_root=town.root, state_file=None, timeout=3.0,
                           environ=environ)
    for server in foreign_servers(socket_dir(environ, owner.uid), tmux.socket):
        if server == where:
            continue
        reply = guard.ask(server)
        if reply.error:
            others[str(server)] = None
        elif reply.sessions is not None:
            others[str(server)] = frozenset(n for n, p in reply.sessions.items()
                                            if in_town(p, town.root))
    try:
        snapshot = tmux.snapshot()
    except ServerDown:
        return TmuxFacts(str(where), down=True, others=others)
    except GastownError as exc:
        return TmuxFacts(str(where), error=str(exc), others=others)
    hooks = ""
    for flags in ("-g", "-gw"):
        result = runner.run(tmux.argv("show-hooks", flags), timeout=settings.tmux_timeout)
        hooks += result.stdout if result.ok else ""
    return TmuxFacts(str(where), hooks=hooks, sessions=snapshot.sessions, others=others)


def exclusive_flock_holders(path: Path, locks: str) -> list[int]:
    """PIDs that hold an exclusive ``flock`` on ``path``, from ``/proc/locks`` text."""
    from gastown_units.ports.locks import flock_holders

    return flock_holders(path, "WRITE", locks)


def _cmdline(argv: list[str]) -> str:
    """A command line on one line (a word may hold newlines)."""
    return " ".join(" ".join(argv).split())


def _process_cmdline(pid: int) -> str:
    import psutil

    return _cmdline(psutil.Process(pid).cmdline())


def gather_daemons(town: Town | None) -> tuple[str, ...]:
    """``gt daemon run`` processes; with a town also the process its ``daemon/daemon.pid``
    names (if its command line has gt, daemon and run, Gas Town's own test) and any
    holder of an exclusive flock on ``daemon/daemon.lock`` (ours hold it shared)."""
    import psutil

    found: dict[int, str] = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if is_gt_daemon(cmdline):
            found[proc.info["pid"]] = f"PID {proc.info['pid']}: {_cmdline(cmdline)[:120]}"
    if town is None:
        return tuple(found.values())
    pid_file = town.daemon_dir / "daemon.pid"
    text = _contained(lambda: pid_file.read_text(encoding="utf-8", errors="replace")[:100],
                      lambda _why: "")
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    if first.isascii() and first.isdigit() and int(first) not in found:
        pid = int(first)
        words = _contained(partial(_process_cmdline, pid), lambda _why: "")
        if all(w in words for w in ("gt", "daemon", "run")):
            found[pid] = f"PID {pid} ({pid_file}): {words[:120]}"
    locks = _contained(lambda: Path("/proc/locks").read_text(encoding="utf-8"),
                       lambda _why: "")
    for holder in exclusive_flock_holders(town.daemon_lock, locks):
        if holder not in found:
            words = _contained(partial(_process_cmdline, holder), lambda _why: "?")
            found[holder] = (f"PID {holder} holds {town.daemon_lock} exclusively: "
                             f"{words[:120]}")
    return tuple(found.values())


def gather_user_daemon(owner: pwd.struct_passwd, environ: Mapping[str, str],
                       proc: Path = Path("/proc")) -> UserDaemonUnit:
    """The owner's ``gastown-daemon.service`` user unit: the file (``$XDG_DATA_HOME`` —
    ours when we are the owner, else the default ``~/.local/share`` — then the user config
    dir), the ``default.target.wants`` symlink, and processes in its cgroup."""
    home = Path(owner.pw_dir)
    data = environ.get("XDG_DATA_HOME", "") if os.getuid() == owner.pw_uid else ""
    config = environ.get("XDG_CONFIG_HOME", "") if os.getuid() == owner.pw_uid else ""
    data_home = Path(data) if data.startswith("/") else home / ".local" / "share"
    config_home = Path(config) if config.startswith("/") else home / ".config"
    name = "gastown-daemon.service"
    found = ""
    for candidate in (data_home / "systemd" / "user" / name,
                      config_home / "systemd" / "user" / name):
        if candidate.is_file():
            found = str(candidate)
            break
    wants = config_home / "systemd" / "user" / "default.target.wants" / name
    enabled = os.path.lexists(wants)
    running = []
    marker = f"/user@{owner.pw_uid}.service/"
    for entry in proc.iterdir() if proc.is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            cgroup = (entry / "cgroup").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in cgroup.splitlines():
            path = line.rpartition(":")[2]
            if marker in path and path.endswith(f"/{name}"):
                running.append(int(entry.name))
                break
    return UserDaemonUnit(owner.pw_name, found, enabled, tuple(sorted(running)))


def gather_town_down(town: Town) -> str:
    from gastown_units.town.town_down import read_down

    mark = read_down(town)
    return mark.status() if mark is not None else ""


def gather_restarts(town: Town, now: float) -> tuple[Backoff, ...]:
    """daemon/restart_state.json read only (a damaged one raises; never set aside here)."""
    data = read_json_object(town.daemon_dir / "restart_state.json") or {}
    agents = data.get("agents", {})
    if not isinstance(agents, dict):
        raise ValueError("'agents' is not an object")
    out = []
    for key, entry in sorted(agents.items()):
        if not isinstance(entry, dict):
            continue
        loop = parse_time(entry.get("crash_loop_since")) is not None
        until = parse_time(entry.get("backoff_until"))
        left = max(0.0, until.timestamp() - now) if until is not None else 0.0
        if loop or left > 0:
            out.append(Backoff(str(key), loop, left))
    return tuple(out)


def gather_bad_files(town: Town) -> tuple[Path, ...]:
    found: list[Path] = []
    seen = 0
    for top, dirs, files in os.walk(town.daemon_dir):
        seen += len(dirs) + len(files)
        found += [Path(top) / f for f in files + dirs if f.endswith(".bad")]
        dirs[:] = [d for d in dirs if not d.endswith(".bad")]
        if seen > MAX_WALK:
            break
    return tuple(sorted(found))


def gather_restart_policy(town: Town) -> tuple[str, ...]:
    """What the Deacon keeper would say of ``patrols.restart_tracker`` (read as it does)."""
    from gastown_units.town.restart_state import tracker_policy

    try:
        data = read_json_object(town.daemon_json)
    except (DamagedFile, OSError) as exc:
        return (f"unreadable ({exc})",)
    return tuple(tracker_policy(data)[1])


def gather_exposure(rigs: tuple[str, ...]) -> dict[str, float | str]:
    units = list(SUPERVISORS)
    for rig in rigs:
        units += [u.format(rig=rig) for u in RIG_SUPERVISORS]
    units += SANDBOXED_HELPERS
    out: dict[str, float | str] = {}
    for unit in units:
        def one(unit: str = unit) -> float | str:
            result = runner.run(["systemd-analyze", "security", "--no-pager", "--", unit],
                                timeout=30.0)
            figure = parse_exposure(result.stdout)
            return figure if figure is not None else f"no figure ({result.error_line()})"
        out[unit] = _contained(one, lambda why: why)
    return out


def _attempt(step: Callable[[], T]) -> tuple[T | None, str]:
    """(``step()``, "") or (None, why it failed): one gathering step, contained."""
    return _contained(lambda: (step(), ""), lambda why: (None, why or "failed"))


def _open_town(root: Path) -> Town:
    town = Town.open(root)
    read_json_object(town.root / "mayor" / "town.json")  # DamagedFile when unreadable
    return town


def _owner_entry(town: Town) -> pwd.struct_passwd:
    return pwd.getpwuid(town.root.stat().st_uid)


def gather(settings: Settings, environ: Mapping[str, str] | None = None) -> Facts:
    """Every fact the checks need, each step contained."""
    env = layers(os.environ).merged() if environ is None else dict(environ)
    systemd = SYSTEMD_DIR.is_dir()
    facts: dict[str, Any] = {"systemd": systemd, "town_root": settings.town_root}
    town: Town | None = None
    rigs: tuple[str, ...] = ()
    home: Path | None = None
    root = settings.town_root
    if root is None:
        facts["town_error"] = "GT_TOWN_ROOT is not set"
    else:
        town, facts["town_error"] = _attempt(lambda: _open_town(root))
    if town is not None:
        from gastown_units.town.rigs import load_rigs

        opened = town
        found, facts["rigs_error"] = _attempt(lambda: tuple(sorted(load_rigs(opened))))
        rigs = found or ()
        facts["rigs"] = rigs
        entry, _ = _attempt(lambda: _owner_entry(opened))
        if entry is not None:
            facts["town_dir_owner"], home = entry.pw_name, Path(entry.pw_dir)
            owner_entry = entry
            unit, why = _attempt(lambda: gather_user_daemon(owner_entry, os.environ))
            facts["user_daemon"] = unit or UserDaemonUnit(entry.pw_name, error=why)
        down, why = _attempt(lambda: gather_town_down(opened))
        facts["town_down"] = down if down is not None else f"town-down mark unreadable: {why}"
    where, why = _attempt(lambda: units_path(os.environ, systemd))
    path, source = where or (SYSTEMD_DEFAULT_PATH, f"unknown ({why})")
    facts["path"], facts["path_source"] = path, source
    seen, why = _attempt(lambda: contexts(settings, rigs, (path, source), os.environ,
                                          systemd))
    views, rig_errors = seen or ([Context(None, settings, path, source)], [why])
    facts["rig_config_errors"] = tuple(rig_errors)
    tools, why = _attempt(lambda: gather_tools(views, town, rigs, home))
    facts["tools"], facts["tools_error"] = tools or ((), why)
    if systemd:
        units, facts["systemd_error"] = _attempt(lambda: gather_units(rigs))
        facts["units"] = units or {}
    if town is not None:
        from gastown_units.status import expected_agents

        opened = town
        tmux, why = _attempt(lambda: gather_tmux(settings, opened, env))
        facts["tmux"] = tmux or TmuxFacts("the town's tmux server", error=why)
        dialect, why = _attempt(lambda: _dialect(settings, opened))
        if dialect is not None:
            facts["dialect"], facts["dialect_reason"] = dialect.verdict.dialect.value, \
                "; ".join(dialect.verdict.reasons)
        else:
            facts["dialect_reason"] = f"not probed: {why}"
        naming = dialect.naming if dialect is not None else J_NAMING
        facts["tmux_tmpdir"] = env.get("TMUX_TMPDIR", "")
        agents, _ = _attempt(lambda: tuple(a.session for a in expected_agents(opened,
                                                                              list(rigs),
                                                                              naming)))
        facts["agents"] = agents or ()
        restarts, facts["restarts_error"] = _attempt(lambda: gather_restarts(opened,
                                                                             time.time()))
        facts["restarts"] = restarts or ()
        bad, facts["bad_files_error"] = _attempt(lambda: gather_bad_files(opened))
        facts["bad_files"] = bad or ()
        policy, why = _attempt(lambda: gather_restart_policy(opened))
        facts["restart_policy"] = policy if policy is not None else (f"not read: {why}",)
    daemons, facts["daemons_error"] = _attempt(lambda: gather_daemons(town))
    facts["daemons"] = daemons or ()
    if systemd:
        if shutil.which("systemd-analyze") is None:
            facts["analyze_missing"] = True
        else:
            exposure, _ = _attempt(lambda: gather_exposure(rigs))
            facts["exposure"] = exposure or {}
    return Facts(**facts)


@click.command()
@click.option("--town", "town_root", type=click.Path(path_type=Path), default=None,
              help="Town root [env GT_TOWN_ROOT, as the units see it].")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per check.")
def doctor(town_root: Path | None, as_json: bool) -> None:
    """Check the installation: one line per check (✓/✗), a fix for each ✗.

    Exit 0 only when every check passes, 1 otherwise, 78 when the configuration
    cannot be read.
    """
    try:
        settings = Settings.load(overrides={"town_root": town_root})
    except ConfigError as exc:
        check = Check("config", False, f"configuration not readable: {exc}",
                      "repair /etc/gastown/gastown.conf (gastown-units config shows what "
                      "is read)")
        _show([check], as_json)
        raise SystemExit(EX_CONFIG) from None
    try:
        checks = run_checks(gather(settings))
    except Exception as exc:  # noqa: BLE001 - every step is contained; this is the net
        checks = [Check("doctor", False, f"doctor failed: {type(exc).__name__}: {exc}",
                        "report this as a bug of gastown-units")]
    _show(checks, as_json)
    raise SystemExit(exit_code(checks))


def _show(checks: list[Check], as_json: bool) -> None:
    for check in checks:
        if as_json:
            click.echo(json.dumps(check.as_json(), ensure_ascii=False))
        else:
            for line in check.lines():
                click.echo(line)
