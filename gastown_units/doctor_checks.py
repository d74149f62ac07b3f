"""``gastown-units doctor``: the checks, as pure functions of gathered facts.

Each check takes :class:`Facts` (what :mod:`gastown_units.commands.doctor` found on this
machine: files, ``systemctl``, tmux, processes) and returns :class:`Check` lines: passed,
failed with a fix, or skipped (a fact that does not apply here, e.g. no
``systemd-analyze``). Nothing here runs a program or touches a file, so every check is
tested with fabricated facts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gastown_units.runtime.wake import CLOSED, EVENT_HOOK_INDEX, EVENT_HOOKS, pending_marker

#: Highest ``systemd-analyze security`` exposure a sandboxed unit may have (one place; the
#: units ship at about 2, README "Sandbox"; the systemd ring asserts it for every one).
EXPOSURE_MAX = 4.0

CONF = "/etc/gastown/gastown.conf"
RIG_CONF = "/etc/gastown/rigs/{rig}.conf"
RESTART = "systemctl restart gastown.target"
TMUX_UNIT = "gastown-tmux.service"
OWNER_DROPIN = "/etc/systemd/system/gastown-.service.d/owner.conf"
# The units whose hardening is judged: the supervisors (not the tmux host, whose server
# becomes every agent's parent and must not be sandboxed like them).
SUPERVISORS = ("gastown-deacon-keeper.service", "gastown-lifecycle-mail.service",
               "gastown-polecat-health.service")
RIG_SUPERVISORS = ("gastown-witness@{rig}.service", "gastown-refinery@{rig}.service")
# The other units that run our code in the same sandbox (judged like the supervisors).
SANDBOXED_HELPERS = ("gastown-resume.service", "gastown-rigs.service")
DAEMON_UNITS = ("gastown-daemon.service", "gt-daemon.service")
EVENT_FILE = "/run/gastown-tmux/events"


@dataclass(frozen=True)
class Check:
    """One line of the report: ``ok`` True (✓), False (✗, with ``fix``) or None (skipped)."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""

    @property
    def mark(self) -> str:
        return {True: "✓", False: "✗", None: "-"}[self.ok]

    def lines(self) -> list[str]:
        """The printed form: the mark and the detail, and an indented fix for a ✗.

        >>> Check("bd", False, "bd not on the units' PATH (/bin)", "add it").lines()
        ["✗ bd not on the units' PATH (/bin)", '    fix: add it']
        """
        out = [f"{self.mark} {self.detail}"]
        if self.ok is False and self.fix:
            out.append(f"    fix: {self.fix}")
        return out

    def as_json(self) -> dict[str, object]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail,
                "fix": self.fix if self.ok is False else ""}


@dataclass(frozen=True)
class Tool:
    """A program the units run: how it is named, for whom, and where it was found."""

    label: str  # "bd", "gt", "tmux", "runtime claude"
    command: str  # as configured: a name looked up on PATH, or a path
    knob: str  # where it is configured, for the fix (GT_BD_BIN, settings/config.json, ...)
    found: str | None  # the file it resolves to on the units' PATH, or None
    users: tuple[str, ...] = ()  # the roles that run it (runtimes)
    path: str = ""  # the PATH it was looked up on ('': the town units' PATH)
    path_source: str = ""


@dataclass(frozen=True)
class Unit:
    """What ``systemctl show`` says about one unit ('' when it has no such property)."""

    name: str
    load: str = ""
    active: str = ""
    sub: str = ""
    result: str = ""
    user: str = ""
    enabled: str = ""  # is-enabled: enabled, disabled, static, masked, ...
    writable: str = ""  # ReadWritePaths= as systemctl show prints it ("-/a /b")


@dataclass(frozen=True)
class TmuxFacts:
    where: str = ""  # the socket file asked, for the messages
    error: str = ""  # why the server could not be asked ('' when it answered)
    down: bool = False  # no server on that socket
    hooks: str = ""  # show-hooks -g and -gw output
    sessions: frozenset[str] = frozenset()
    # other servers of the owner: socket path -> its sessions, or None when it did not answer
    others: Mapping[str, frozenset[str] | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Backoff:
    session: str
    crash_loop: bool
    backoff_left: float  # seconds of backoff left (0: none)


@dataclass(frozen=True)
class UserDaemonUnit:
    """Gas Town's own systemd *user* unit of the town's owner ([L] ``gt daemon
    enable-supervisor``, gastown-2026.md §6.11): ``Restart=always``, so a real daemon
    comes back every 5 s and takes the town (``gt up`` then sees no lock file)."""

    owner: str
    path: str = ""  # the unit file found ('' when there is none)
    enabled: bool = False  # the default.target.wants symlink exists
    running: tuple[int, ...] = ()  # PIDs in its cgroup
    error: str = ""  # why it could not be looked for


@dataclass(frozen=True)
class Facts:
    """Everything the checks judge; a fact that could not be gathered carries its reason."""

    town_root: Path | None = None
    town_error: str = ""  # '' when mayor/town.json was found and read
    rigs: tuple[str, ...] = ()
    rigs_error: str = ""
    path: str = ""  # the units' PATH
    path_source: str = ""  # where that PATH comes from
    tools: tuple[Tool, ...] = ()
    tools_error: str = ""  # e.g. a runtime that cannot be resolved
    rig_config_errors: tuple[str, ...] = ()  # rigs/<rig>.conf files that cannot be read
    systemd: bool = True  # /run/systemd/system exists
    systemd_error: str = ""  # systemctl could not be asked
    units: Mapping[str, Unit] = field(default_factory=dict)
    town_dir_owner: str = ""  # user name owning the town directory
    tmux: TmuxFacts | None = None  # None: not asked (no town to find its owner)
    agents: tuple[str, ...] = ()  # session names of the town's agents
    daemons: tuple[str, ...] = ()  # "PID N: cmdline" of gt daemon processes
    daemons_error: str = ""
    restarts: tuple[Backoff, ...] = ()
    restarts_error: str = ""
    bad_files: tuple[Path, ...] = ()
    bad_files_error: str = ""
    # what is wrong with mayor/daemon.json patrols.restart_tracker (§6.10), one per setting
    restart_policy: tuple[str, ...] = ()
    exposure: Mapping[str, float | str] = field(default_factory=dict)  # str: why unknown
    analyze_missing: bool = False
    dialect: str = ""  # J, L, unknown; '' when not probed
    dialect_reason: str = ""
    tmux_tmpdir: str = ""  # the units' TMUX_TMPDIR ('' = /tmp)
    user_daemon: UserDaemonUnit | None = None  # None: no owner known to look for it
    town_down: str = ""  # the town-down mark's status line ('' when the town is not down)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# --- the town --------------------------------------------------------------------------

def check_town(facts: Facts) -> list[Check]:
    if facts.town_root is None or facts.town_error:
        why = facts.town_error or "GT_TOWN_ROOT is not set"
        return [Check("town", False, f"town not readable: {why}",
                      f"set GT_TOWN_ROOT to the town root (the directory holding "
                      f"mayor/town.json) in {CONF}, then {RESTART}")]
    if facts.rigs_error:
        return [Check("town", False, f"town {facts.town_root}: {facts.rigs_error}",
                      f"repair {facts.town_root}/mayor/rigs.json (gt rig list shows what "
                      "gt reads), then " + RESTART)]
    return [Check("town", True,
                  f"town {facts.town_root} readable ({_plural(len(facts.rigs), 'rig')})")]


def check_dialect(facts: Facts) -> list[Check]:
    """Which Gas Town the services see (gastown-2026.md §0); unknown means they refuse."""
    if facts.town_root is None or facts.town_error:
        return []
    if not facts.dialect:
        return [Check("dialect", None, f"dialect not known: {facts.dialect_reason}")]
    if facts.dialect == "unknown":
        return [Check("dialect", False, f"which Gas Town this is is unclear "
                                        f"({facts.dialect_reason}): every service refuses it",
                      f"set GT_DIALECT=j or GT_DIALECT=l in {CONF} (j: January 2026 town, "
                      f"default tmux server; l: mid-2026, its own socket), then {RESTART}")]
    checks = [Check("dialect", True, f"Gas Town dialect {facts.dialect} "
                                     f"({facts.dialect_reason})")]
    if facts.dialect == "L" and facts.tmux_tmpdir.rstrip("/") not in ("", "/tmp"):
        checks.append(Check(
            "tmux-tmpdir", False,
            f"TMUX_TMPDIR={facts.tmux_tmpdir}: an [L] gt looks for the town's server only "
            "in /tmp/tmux-<uid>/, starts a second one there, and SIGTERMs agents outside "
            "those sockets (gastown-2026.md §3.0, §7.3)",
            f"remove TMUX_TMPDIR from {CONF}, then {RESTART}"))
    return checks


# --- tools on the units' PATH ------------------------------------------------------------

def check_tools(facts: Facts) -> list[Check]:
    checks = []
    for tool in facts.tools:
        shown = ", ".join(tool.users[:4])
        if len(tool.users) > 4:
            shown += f" and {len(tool.users) - 4} more"
        who = f" (for {shown})" if tool.users else ""
        if tool.found:
            checks.append(Check(tool.label, True,
                                f"{tool.label} on the units' PATH: {tool.found}{who}"))
        elif "/" in tool.command:
            checks.append(Check(tool.label, False,
                                f"{tool.label} {tool.command}{who} is not an executable file",
                                f"install it there, or point {tool.knob} at it, then "
                                + RESTART))
        else:
            rig = tool.label.partition(" (rig ")[2].rstrip(")")
            where = f"{RIG_CONF.format(rig=rig)} or {CONF}" if rig else CONF
            checks.append(Check(
                tool.label, False,
                f"{tool.command}{who} not on the units' PATH ({tool.path or facts.path})"
                + (f" (rig {rig})" if rig else ""),
                f"add the directory of {tool.command} to PATH in {where} (now: "
                f"{tool.path_source or facts.path_source}), or set {tool.knob} to its full "
                "path, then " + RESTART))
    for error in facts.rig_config_errors:
        checks.append(Check("rig-config", False, f"rig configuration not readable: {error}",
                            f"repair the file named (see {RIG_CONF.format(rig='RIG')}), then "
                            + RESTART))
    if facts.tools_error:
        checks.append(Check("runtime", False, f"runtime not resolved: {facts.tools_error}",
                            "repair the town's or rig's settings/config.json (agent, "
                            "role_agents, agents), or set GT_AGENT_COMMAND in " + CONF))
    return checks


# --- systemd ---------------------------------------------------------------------------

def _no_systemd(facts: Facts) -> Check | None:
    if not facts.systemd:
        return Check("systemd", False,
                     "systemd not running here (no /run/systemd/system): unit checks skipped",
                     "run gastown-units doctor on the machine whose systemd runs the units")
    if facts.systemd_error:
        return Check("systemd", False, f"systemctl cannot be asked: {facts.systemd_error}",
                     "run gastown-units doctor as root (another user's systemctl needs "
                     "the D-Bus system bus: systemctl start dbus.socket)")
    return None


def _unit(facts: Facts, name: str) -> Unit:
    return facts.units.get(name, Unit(name))


def check_tmux_host(facts: Facts) -> list[Check]:
    """The host unit (active, as the owner), its server, the hooks, the agents' server."""
    checks: list[Check] = []
    if facts.systemd and not facts.systemd_error:
        host = _unit(facts, TMUX_UNIT)
        if host.active == "active":
            checks.append(Check("tmux-host", True, f"{TMUX_UNIT} active ({host.sub})"))
        else:
            state = host.active or "unknown"
            if host.load and host.load != "loaded":
                state = f"{host.load}"
            checks.append(Check("tmux-host", False, f"{TMUX_UNIT} is {state}",
                                f"systemctl start {TMUX_UNIT} (journalctl -u {TMUX_UNIT} "
                                "says why it stopped)"))
        user = host.user or "root"
        owner = facts.town_dir_owner
        if not owner:
            checks.append(Check("tmux-owner", None,
                                f"{TMUX_UNIT} runs as {user}; the town's owner is unknown"))
        elif user == owner:
            checks.append(Check("tmux-owner", True, f"{TMUX_UNIT} runs as the owner ({user})"))
        else:
            checks.append(Check(
                "tmux-owner", False,
                f"{TMUX_UNIT} runs as {user}, not as the town's owner {owner}",
                f"printf '[Service]\\nUser={owner}\\n"
                f"ReadWritePaths=-{facts.town_root}\\n' > {OWNER_DROPIN}; systemctl "
                f"daemon-reload; systemctl restart {TMUX_UNIT} gastown.target"))
    tmux = facts.tmux
    if tmux is None:
        checks.append(Check("tmux-server", None, "tmux server not checked: no town"))
        return checks
    if tmux.error or tmux.down:
        why = tmux.error or "no server running"
        checks.append(Check("tmux-server", False,
                            f"tmux server at {tmux.where} does not answer: {why}",
                            f"systemctl start {TMUX_UNIT}; check GT_TMUX_SOCKET in {CONF}"))
        checks.append(_split_town(facts))  # the other servers were asked all the same
        return checks
    checks.append(Check("tmux-server", True, f"tmux server answers at {tmux.where}"))
    missing = [h for h in EVENT_HOOKS if not _has_hook(tmux.hooks, h)]
    marker = pending_marker(Path(EVENT_FILE)).name
    closed = Path(EVENT_FILE).name + CLOSED
    outdated = [h for h in EVENT_HOOKS if h not in missing
                and not (_has_hook(tmux.hooks, h, marker) and _has_hook(tmux.hooks, h, closed))]
    if missing or outdated:
        what = (f"event hooks missing: {', '.join(f'{h}[{EVENT_HOOK_INDEX}]' for h in missing)}"
                if missing else
                f"event hooks of an older version (they do not write {marker} and "
                f"{closed}SESSION, so a death during a polecat-health sweep waits for the "
                f"timer, or every service wakes for every closed session): "
                f"{', '.join(f'{h}[{EVENT_HOOK_INDEX}]' for h in outdated)}")
        checks.append(Check(
            "tmux-hooks", False, what,
            f"as {facts.town_dir_owner or 'the owner'}: gastown-units tmux-ready "
            f"--event-file {EVENT_FILE} (what {TMUX_UNIT}'s ExecStartPost runs; "
            f"systemctl restart {TMUX_UNIT} does it too, but ends the agents of a server "
            "the unit owns)"))
    else:
        checks.append(Check("tmux-hooks", True, "event hooks installed ("
                            + ", ".join(f"{h}[{EVENT_HOOK_INDEX}]" for h in EVENT_HOOKS) + ")"))
    checks.append(_split_town(facts))
    return checks


def _has_hook(hooks: str, hook: str, naming: str = "") -> bool:
    """Whether ``show-hooks`` output sets ``hook[77]`` (to a command naming ``naming``).

    >>> _has_hook("session-closed[77] run-shell -b ': > /run/x'\\n", "session-closed")
    True
    >>> _has_hook("session-closed[77] run-shell -b ': > /run/x'\\n", "session-closed",
    ...           "x.pending")
    False
    >>> _has_hook("session-closed[0] x\\npane-died\\n", "pane-died")
    False
    """
    prefix = f"{hook}[{EVENT_HOOK_INDEX}] "
    return any(line.startswith(prefix) and naming in line for line in hooks.splitlines())


def _split_town(facts: Facts) -> Check:
    tmux = facts.tmux or TmuxFacts()
    here = sorted(set(facts.agents) & tmux.sessions)
    elsewhere: dict[str, list[str]] = {}
    for server, sessions in sorted(tmux.others.items()):
        for session in sorted(set(facts.agents) & (sessions or frozenset())):
            elsewhere.setdefault(server, []).append(session)
    if elsewhere:
        server, names = next(iter(elsewhere.items()))
        name = Path(server).name
        fix = ("unset GT_TMUX_SOCKET" if name == "default" else f"set GT_TMUX_SOCKET={name}")
        return Check("agents-server", False,
                     f"split town: {', '.join(names)} run on tmux server {server}, not on "
                     f"{tmux.where}",
                     f"{fix} in {CONF} (the server gt uses), then {RESTART}")
    silent = sorted(s for s, sessions in tmux.others.items() if sessions is None)
    note = f"; {', '.join(silent)} did not answer" if silent else ""
    return Check("agents-server", True,
                 f"{_plural(len(here), 'agent session')} of the town on this server, "
                 f"none on another server of the owner{note}")


def check_rigs_enabled(facts: Facts) -> list[Check]:
    if _no_systemd(facts) or facts.town_error or facts.rigs_error:
        return []
    checks = []
    for rig in facts.rigs:
        target = _unit(facts, f"gastown-rig@{rig}.target")
        services = [_unit(facts, u.format(rig=rig)) for u in RIG_SUPERVISORS]
        if target.enabled == "enabled":
            checks.append(Check(f"rig-{rig}", True,
                                f"rig {rig}: gastown-rig@{rig}.target enabled"))
        elif all(s.enabled == "enabled" for s in services):
            checks.append(Check(f"rig-{rig}", True, f"rig {rig}: "
                                + " and ".join(s.name for s in services) + " enabled"))
        else:
            off = [u.name for u in (target, *services) if u.enabled != "enabled"]
            checks.append(Check(f"rig-{rig}", False,
                                f"rig {rig} not enabled ({', '.join(off)}: "
                                f"{target.enabled or 'unknown'})",
                                f"systemctl enable --now gastown-rig@{rig}.target"))
    return checks


def check_no_gt_daemon(facts: Facts) -> list[Check]:
    checks = []
    if facts.daemons_error:
        checks.append(Check("gt-daemon", False,
                            f"cannot tell whether gt daemon runs: {facts.daemons_error}",
                            "run gastown-units doctor as root"))
    elif facts.daemons:
        checks.append(Check("gt-daemon", False,
                            f"gt daemon runs beside the units: {'; '.join(facts.daemons)}",
                            "gt daemon stop (and do not start it again: gastown-units "
                            "replaces it; gt up starts it)"))
    else:
        checks.append(Check("gt-daemon", True, "no gt daemon running"))
    if not _no_systemd(facts):
        for name in DAEMON_UNITS:
            unit = _unit(facts, name)
            if unit.enabled == "enabled" or unit.active == "active":
                checks.append(Check("gt-daemon-unit", False,
                                    f"{name} is {unit.enabled or unit.active}",
                                    f"systemctl disable --now {name}"))
    return checks


USER_DAEMON_UNIT = "gastown-daemon.service"
RESUME = "gt up, gastown-units resume, or systemctl start gastown.target"


def check_user_daemon_unit(facts: Facts) -> list[Check]:
    unit = facts.user_daemon
    if unit is None:
        return []
    if unit.error:
        return [Check("gt-daemon-user-unit", None,
                      f"{USER_DAEMON_UNIT} of {unit.owner} not looked for: {unit.error}")]
    state = [w for w, on in (("enabled", unit.enabled), ("running", bool(unit.running))) if on]
    if state:
        pids = f" (PID {', '.join(map(str, unit.running))})" if unit.running else ""
        return [Check("gt-daemon-user-unit", False,
                      f"Gas Town's own user unit {USER_DAEMON_UNIT} of {unit.owner} is "
                      f"{' and '.join(state)}{pids} ({unit.path or 'unit file not found'}): "
                      "it restarts `gt daemon run` every 5 s and takes the town",
                      f"as {unit.owner}: systemctl --user disable --now {USER_DAEMON_UNIT} "
                      "(hands the town over to the units)")]
    if unit.path:
        return [Check("gt-daemon-user-unit", True,
                      f"{USER_DAEMON_UNIT} of {unit.owner} is installed but disabled and "
                      "stopped")]
    return [Check("gt-daemon-user-unit", True,
                  f"no Gas Town user unit {USER_DAEMON_UNIT} of {unit.owner}")]


def check_town_down(facts: Facts) -> list[Check]:
    if facts.town_root is None or facts.town_error:
        return []
    if facts.town_down:
        return [Check("town-down", False, facts.town_down,
                      f"when the town should run again: {RESUME}")]
    return [Check("town-down", True, "the town is not marked down (gt down)")]


def check_failed_units(facts: Facts) -> list[Check]:
    gone = _no_systemd(facts)
    if gone:
        return [gone]
    bad = []
    for unit in sorted(facts.units.values(), key=lambda u: u.name):
        if unit.result == "start-limit-hit":
            bad.append(Check(f"unit-{unit.name}", False,
                             f"{unit.name} hit its start limit ({unit.active})",
                             f"journalctl -u {unit.name} (why it failed); after the fix: "
                             f"systemctl reset-failed {unit.name}; systemctl start "
                             f"{unit.name}"))
        elif unit.active == "failed":
            bad.append(Check(f"unit-{unit.name}", False,
                             f"{unit.name} failed (result {unit.result or 'unknown'})",
                             f"journalctl -u {unit.name} (why it failed); after the fix: "
                             f"systemctl reset-failed {unit.name}; systemctl start "
                             f"{unit.name}"))
    if bad:
        return bad
    return [Check("units", True, "no gastown unit failed or in its start limit")]


def check_restarts(facts: Facts) -> list[Check]:
    if facts.restarts_error:
        return [Check("restarts", False, f"restart state unreadable: {facts.restarts_error}",
                      "the next polecat-health sweep sets it aside as .bad; look at it, "
                      "then remove the .bad file")]
    checks = []
    for entry in facts.restarts:
        if entry.crash_loop:
            checks.append(Check(f"restarts-{entry.session}", False,
                                f"{entry.session} is in a crash loop: no more restarts",
                                f"find why it crashes (journalctl GT_AGENT=...), then "
                                f"gastown-units clear-backoff {entry.session}"))
        elif entry.backoff_left > 0:  # normal for a while after any restart: told, no ✗
            checks.append(Check(f"restarts-{entry.session}", None,
                                f"{entry.session} restarted recently: in restart backoff for "
                                f"{entry.backoff_left:.0f}s more (gastown-units clear-backoff "
                                f"{entry.session} ends it)"))
    if not any(c.ok is False for c in checks):
        checks.append(Check("restarts", True, "no agent in a crash loop"))
    return checks


def check_bad_files(facts: Facts) -> list[Check]:
    if facts.bad_files_error:
        return [Check("bad-files", False,
                      f"cannot look for set-aside state files: {facts.bad_files_error}",
                      "run gastown-units doctor as root or the owner")]
    if not facts.bad_files:
        return [Check("bad-files", True, "no state file set aside as corrupt (*.bad)")]
    shown = ", ".join(str(p) for p in facts.bad_files[:5])
    more = f" and {len(facts.bad_files) - 5} more" if len(facts.bad_files) > 5 else ""
    return [Check("bad-files", False,
                  f"{_plural(len(facts.bad_files), 'state file')} set aside as corrupt: "
                  f"{shown}{more}",
                  "the services went on with a fresh state; read what is in them, then "
                  "remove the .bad files")]


def check_restart_policy(facts: Facts) -> list[Check]:
    """The Deacon's restart backoff comes from ``patrols.restart_tracker``; a setting the
    keeper cannot use falls back to Gas Town's default, which the operator should know."""
    if facts.town_root is None or facts.town_error:
        return []
    if not facts.restart_policy:
        return [Check("restart-policy", True,
                      "the Deacon's restart backoff (patrols.restart_tracker) is usable")]
    where = facts.town_root / "mayor" / "daemon.json"
    return [Check("restart-policy", False,
                  f"{where}: {'; '.join(facts.restart_policy)}: Gas Town's default restart "
                  "backoff is used instead",
                  "correct patrols.restart_tracker (durations are whole nanoseconds, "
                  "e.g. 30000000000 for 30 s); the Deacon keeper reads it on its next pass")]


def check_hardening(facts: Facts) -> list[Check]:
    if _no_systemd(facts):
        return []
    if facts.analyze_missing:
        return [Check("hardening", None, "hardening not checked: no systemd-analyze")]
    checks = []
    for unit, value in sorted(facts.exposure.items()):
        if isinstance(value, str):
            checks.append(Check(f"hardening-{unit}", None,
                                f"hardening of {unit} not known: {value}"))
        elif value > EXPOSURE_MAX:
            checks.append(Check(f"hardening-{unit}", False,
                                f"{unit} exposure {value:.1f} (above {EXPOSURE_MAX:.1f})",
                                f"systemd-analyze security {unit} lists what is open; "
                                "reinstall the package's unit or remove the drop-in "
                                f"that weakens it (systemctl cat {unit})"))
        else:
            checks.append(Check(f"hardening-{unit}", True,
                                f"{unit} exposure {value:.1f} (at most {EXPOSURE_MAX:.1f})"))
    return checks


def writable_in(town: Path, paths: str) -> bool:
    """Whether ``town`` is at or below one of ``paths`` (``ReadWritePaths=`` as ``systemctl
    show`` prints it: blank-separated, ``-``/``+`` prefixes).

    >>> writable_in(Path("/home/alice/gt"), "/tmp /var/tmp -/home/alice/gt")
    True
    >>> writable_in(Path("/home/alice/gt"), "/tmp -/home/alice/gt2"), writable_in(
    ...     Path("/srv/towns/gt"), "-/srv/towns/")
    (False, True)
    """
    town_text = str(town).rstrip("/") or "/"
    for entry in paths.split():
        base = entry.lstrip("-+").rstrip("/") or "/"
        if town_text == base or town_text.startswith(base.rstrip("/") + "/"):
            return True
    return False


def check_sandbox(facts: Facts) -> list[Check]:
    """The supervisors' file system is read-only but for their ReadWritePaths=: the town
    must be among them (the owner drop-in names it; README "Sandbox")."""
    if _no_systemd(facts) or facts.town_root is None or facts.town_error:
        return []
    names = [*SUPERVISORS, *(u.format(rig=rig) for rig in facts.rigs for u in RIG_SUPERVISORS)]
    loaded = [u for u in (facts.units.get(n) for n in names) if u and u.load == "loaded"]
    if not loaded:
        return []
    closed = [u.name for u in loaded if not writable_in(facts.town_root, u.writable)]
    if closed:
        shown = ", ".join(closed[:3]) + (f" and {len(closed) - 3} more" if len(closed) > 3
                                         else "")
        return [Check("sandbox-town", False,
                      f"town {facts.town_root} is read-only in the sandbox of {shown}",
                      f"add ReadWritePaths=-{facts.town_root} under [Service] in "
                      f"{OWNER_DROPIN} (gastown-units setup does it); systemctl "
                      f"daemon-reload; {RESTART}")]
    return [Check("sandbox-town", True,
                  f"town {facts.town_root} writable in the supervisors' sandbox")]


CHECKS = (check_town, check_dialect, check_tools, check_tmux_host, check_rigs_enabled,
          check_no_gt_daemon, check_user_daemon_unit, check_town_down, check_failed_units,
          check_restarts, check_bad_files, check_restart_policy, check_sandbox,
          check_hardening)


def run_checks(facts: Facts) -> list[Check]:
    """Every check, in report order."""
    return [check for each in CHECKS for check in each(facts)]


def exit_code(checks: Sequence[Check]) -> int:
    """0 when no check failed (skipped ones do not count), else 1."""
    return 1 if any(c.ok is False for c in checks) else 0


def parse_exposure(text: str) -> float | None:
    """The figure of ``systemd-analyze security UNIT``'s last line.

    >>> parse_exposure("→ Overall exposure level for x.service: 5.6 MEDIUM 😐\\n")
    5.6
    >>> parse_exposure("nothing") is None
    True
    """
    import re

    match = re.search(r"Overall exposure level for \S+: ([0-9]+(?:\.[0-9]+)?)", text)
    return float(match[1]) if match else None


def is_gt_daemon(cmdline: Sequence[str]) -> bool:
    """Whether a process's argv is ``gt daemon run`` (also through an interpreter).

    >>> is_gt_daemon(["/usr/local/bin/gt", "daemon", "run"])
    True
    >>> is_gt_daemon(["python3", "/opt/gt", "daemon", "run", "--x"])
    True
    >>> is_gt_daemon(["gt", "daemon", "status"]), is_gt_daemon(["vim", "gt"])
    (False, False)
    """
    for i, word in enumerate(cmdline[:3]):
        if Path(word).name == "gt" and list(cmdline[i + 1:i + 3]) == ["daemon", "run"]:
            return True
    return False
