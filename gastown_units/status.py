"""``gastown-units status``: what runs, by the keepers' own rules, and what should.

Read-only: it writes nothing, renames nothing, starts nothing. It reads tmux through
libtmux (tolerant of Debian's 0.21 and of 0.6x) on the town's server — the owner's, also
when root asks (:mod:`gastown_units.ports.operator`) — and the units through ``systemctl
show``. "Everything expected runs" means: every supervisor unit active, the Deacon and each
operational rig's Witness and Refinery running (unless held), and no zombie agent.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import libtmux
import psutil

from gastown_units.config import Settings
from gastown_units.errors import GastownError
from gastown_units.ports import runner
from gastown_units.ports.dialect_probe import for_town
from gastown_units.ports.operator import Owner, operator_tmux
from gastown_units.services.sessions import pane_liveness
from gastown_units.town.agents import resolve_agent
from gastown_units.town.dialect import Dialect
from gastown_units.town.holds import Hold, all_holds
from gastown_units.town.identity import BOOT, DEACON, J_NAMING, Identity, Naming, Role
from gastown_units.town.jsonfile import DamagedFile, parse_time, read_json_object
from gastown_units.town.layout import Town
from gastown_units.town.polecats import usable_name
from gastown_units.town.rigs import load_rigs
from gastown_units.town.wisp import read_wisp_config

TOWN_UNITS = ("gastown-tmux.service", "gastown-deacon-keeper.service",
              "gastown-lifecycle-mail.service", "gastown-polecat-health.path",
              "gastown-polecat-health.timer")
RIG_UNITS = ("gastown-witness@{}.service", "gastown-refinery@{}.service")
SWEEP_UNIT = "gastown-polecat-health.service"  # a oneshot: only "not failed" is expected
_UNIT_PROPS = ("Id", "LoadState", "ActiveState", "SubState", "Result", "UnitFileState",
               "StatusText")


@dataclass(frozen=True)
class AgentRow:
    identity: Identity
    state: str  # running | zombie | missing | unknown (the agent cannot be resolved)
    pid: int | None
    command: str
    uptime: float | None = None  # seconds since the pane's process started
    restarts: int = 0
    backoff: str = ""  # "crash loop", "until 12:03:04", or ""
    held: Hold | None = None
    expected: bool = False  # must run for the town to be healthy

    @property
    def problem(self) -> str | None:
        """Why this row keeps status from exiting 0, or None."""
        if self.state == "zombie":
            return f"{self.identity.address} is a zombie (pane runs {self.command or '?'})"
        if self.held is None and self.state != "running" and self.backoff == "crash loop":
            if self.identity.role is Role.DEACON:  # only Gas Town's own entry says so
                return (f"{self.identity.address} is in a crash loop (restarts stopped until "
                        "`gt daemon clear-backoff deacon`)")
            return f"{self.identity.address} is in a crash loop (restarts stopped)"
        if self.expected and self.held is None and self.state != "running":
            return f"{self.identity.address} is {self.state}"
        return None


@dataclass(frozen=True)
class UnitRow:
    name: str
    active: str  # ActiveState (active, failed, inactive, ...) or "unknown"
    sub: str
    enabled: str  # UnitFileState
    status: str  # the last STATUS= (StatusText)
    expected: bool = True

    @property
    def problem(self) -> str | None:
        if self.active == "failed":
            return f"{self.name} failed"
        if self.expected and self.active != "active":
            return f"{self.name} is {self.active}"
        return None


@dataclass
class Report:
    town: Town
    owner: Owner | None
    server: str  # the tmux server asked (socket label or file)
    server_up: bool
    agents: list[AgentRow] = field(default_factory=list)
    units: list[UnitRow] | None = None  # None: systemd does not run here
    notes: list[str] = field(default_factory=list)  # what could not be read
    dialect: str = "J"  # J, L or unknown (gastown-2026.md §0)
    dialect_reason: str = ""
    down: str = ""  # the town-down mark's status line (gt down), '' when not down

    @property
    def problems(self) -> list[str]:
        found = [p for r in self.agents if (p := r.problem)]
        found += [p for u in self.units or () if (p := u.problem)]
        if not self.server_up:
            found.insert(0, f"tmux server {self.server} not running")
        if self.dialect == Dialect.UNKNOWN.value:
            found.insert(0, f"the services refuse this town: which Gas Town it is is unclear "
                            f"({self.dialect_reason}); set GT_DIALECT")
        if self.down:
            found.insert(0, self.down)
        return found

    def as_json(self) -> dict[str, Any]:
        return {
            "town": str(self.town.root), "owner": self.owner.name if self.owner else None,
            "tmux_server": self.server, "tmux_up": self.server_up,
            "dialect": self.dialect, "dialect_reason": self.dialect_reason,
            "agents": [{"address": r.identity.address, "session": r.identity.session,
                        "role": str(r.identity.role), "rig": r.identity.rig,
                        "state": r.state, "pid": r.pid, "command": r.command,
                        "uptime": r.uptime, "restarts": r.restarts, "backoff": r.backoff,
                        "held": asdict(r.held) if r.held else None, "expected": r.expected}
                       for r in self.agents],
            "units": None if self.units is None else [asdict(u) for u in self.units],
            "notes": self.notes, "town_down": self.down or None,
            "problems": self.problems, "ok": not self.problems,
        }


def expected_agents(town: Town, rigs: list[str], naming: Naming = J_NAMING
                    ) -> list[Identity]:
    """The Deacon, Boot, each rig's Witness and Refinery, and every polecat/crew dir,
    spelt as the town spells them."""
    agents = [DEACON, BOOT]
    for rig in rigs:
        agents += [Identity(Role.WITNESS, rig), Identity(Role.REFINERY, rig)]
        for role, sub in ((Role.POLECAT, "polecats"), (Role.CREW, "crew")):
            base = town.rig_dir(rig) / sub
            try:
                names = sorted(p.name for p in base.iterdir() if p.is_dir())
            except OSError:  # missing or unlistable: no agents shown from it
                names = []
            agents += [Identity(role, rig, n) for n in names
                       if not n.startswith(".") and usable_name(n)]
    return [who.in_town(naming) for who in agents]


def tmux_panes(socket: str | None, socket_path: Path | None = None
               ) -> dict[str, tuple[int, str, bool]] | None:
    """First pane of every session: name -> (PID, command, dead); None without a server."""
    server: Any
    if socket_path is not None:
        server = libtmux.Server(socket_path=str(socket_path))
    else:
        server = libtmux.Server(socket_name=socket) if socket else libtmux.Server()
    if not server.is_alive():
        return None
    panes: dict[str, tuple[int, str, bool]] = {}
    # Not server.panes: libtmux 0.21 returns only one session's panes there.
    for session in server.sessions:
        for window in session.windows:
            for pane in window.panes:
                name = str(session.session_name)
                if name not in panes and pane.pane_pid:
                    panes[name] = (int(pane.pane_pid), str(pane.pane_current_command or ""),
                                   str(getattr(pane, "pane_dead", "") or "") == "1")
    return panes


def restart_records(town: Town, now: float) -> tuple[dict[str, tuple[int, str]], str | None]:
    """session -> (restarts, backoff text) from ``daemon/restart_state.json``, read only
    (a damaged file is reported, never set aside: status writes nothing)."""
    path = town.daemon_dir / "restart_state.json"
    try:
        data = read_json_object(path) or {}
    except DamagedFile as exc:
        return {}, f"restart state unreadable: {exc}"
    agents = data.get("agents")
    if not isinstance(agents, dict):
        return {}, None
    found: dict[str, tuple[int, str]] = {}
    for key, entry in agents.items():
        if not isinstance(entry, dict):
            continue
        count = entry.get("restart_count")
        count = count if isinstance(count, int) and not isinstance(count, bool) else 0
        backoff = ""
        loop = parse_time(entry.get("crash_loop_since"))
        until = parse_time(entry.get("backoff_until"))
        if loop is not None:
            backoff = "crash loop"
        elif until is not None and until.timestamp() > now:
            backoff = f"{until.timestamp() - now:.0f}s more"
        found[str(key)] = (max(0, min(count, 10**6)), backoff)
    return found, None


def _uptime(pid: int, now: float) -> float | None:
    try:
        return max(0.0, now - psutil.Process(pid).create_time())
    except (psutil.Error, OSError, ValueError):
        return None


def _rig_operational(town: Town, rig: str) -> bool | None:
    try:
        return read_wisp_config(town, rig).not_operational_reason() is None
    except ValueError:
        return None


def unit_rows(rigs: list[str], timeout: float) -> tuple[list[UnitRow] | None, str | None]:
    """The supervisor units' state, or None and why not: systemd does not run here, or
    ``systemctl`` cannot answer this user (no D-Bus system bus for a non-root user)."""
    if not Path("/run/systemd/system").is_dir():
        return None, None
    names = [*TOWN_UNITS, SWEEP_UNIT, *(u.format(r) for r in rigs for u in RIG_UNITS)]
    try:
        result = runner.run(["systemctl", "show", f"--property={','.join(_UNIT_PROPS)}",
                             "--", *names], timeout=timeout)
    except GastownError as exc:
        return None, f"units not checked: {exc}"
    if not result.ok or not result.stdout.strip():
        return None, (f"units not checked: systemctl show failed ({result.error_line()}); "
                      "run status as root to see them")
    rows: dict[str, UnitRow] = {}
    for block in result.stdout.split("\n\n"):
        props = dict(line.partition("=")[::2] for line in block.splitlines() if "=" in line)
        name = props.get("Id", "")
        if name not in names:
            continue
        active = props.get("ActiveState", "unknown")
        if props.get("LoadState") == "not-found":
            active = "not-found"
        rows[name] = UnitRow(name, active, props.get("SubState", ""),
                             props.get("UnitFileState", ""), props.get("StatusText", ""),
                             expected=name != SWEEP_UNIT)
    return [rows.get(n, UnitRow(n, "unknown", "", "", "not shown by systemctl"))
            for n in names], None


def collect(settings: Settings, *, units: bool = True) -> Report:
    """Everything ``status`` shows. ValueError when the town's rigs cannot be read."""
    now = time.time()
    town = Town.open(settings.town_root)
    rigs = sorted(load_rigs(town))
    tmux, owner = operator_tmux(settings, town)
    found = for_town(settings, town, uid=owner.uid)[1]
    naming = found.naming if found else J_NAMING
    server = str(tmux.socket_path) if tmux.socket_path else (tmux.socket or "default")
    report = Report(town, owner, server, False)
    if found is not None:
        report.dialect = found.verdict.dialect.value
        report.dialect_reason = "; ".join(found.verdict.reasons)
    from gastown_units.town.town_down import read_down

    try:
        mark = read_down(town)
    except OSError as exc:
        report.notes.append(f"town-down mark unreadable: {exc}")
        mark = None
    report.down = mark.status() if mark is not None else ""
    panes = tmux_panes(tmux.socket, tmux.socket_path)
    report.server_up = panes is not None
    restarts, note = restart_records(town, now)
    if note:
        report.notes.append(note)
    holds = all_holds(town)
    operational = {rig: _rig_operational(town, rig) for rig in rigs}
    for rig, up in operational.items():
        if up is None:
            report.notes.append(f"rig {rig}: wisp config unreadable (its agents not judged)")
    for who in expected_agents(town, rigs, naming):
        expected = who.role is Role.DEACON or (
            who.role in (Role.WITNESS, Role.REFINERY) and operational.get(who.rig or "") is True)
        count, backoff = restarts.get(who.session, (0, ""))
        if who.role is Role.DEACON and who.session not in restarts:
            count, backoff = restarts.get("deacon", (0, ""))  # Gas Town's own key (§6.10)
        extra: dict[str, Any] = {"restarts": count, "backoff": backoff,
                                 "held": holds.get(who.session), "expected": expected}
        pane = (panes or {}).get(who.session)
        if pane is None:
            report.agents.append(AgentRow(who, "missing", None, "", **extra))
            continue
        try:
            agent = resolve_agent(town, who.role, who.rig, settings.agent_command)
        except ValueError:  # a damaged settings file: no verdict, as the keepers do
            report.agents.append(AgentRow(who, "unknown", pane[0], pane[1],
                                          _uptime(pane[0], now), **extra))
            continue
        state = pane_liveness(pane[1], pane[0], pane[2], agent).value  # the keepers' rule
        report.agents.append(AgentRow(who, state, pane[0], pane[1], _uptime(pane[0], now),
                                      **extra))
    if units:
        report.units, note = unit_rows(rigs, settings.tmux_timeout)
        if note:
            report.notes.append(note)
    return report


def duration(seconds: float | None) -> str:
    """``5s``, ``3m07s``, ``2h03m``, ``4d02h``; ``-`` when unknown.

    >>> [duration(s) for s in (None, 5, 187, 7380, 352800)]
    ['-', '5s', '3m07s', '2h03m', '4d02h']
    """
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def render(report: Report) -> list[str]:
    """The text ``status`` prints."""
    owner = f"owner {report.owner.name}" if report.owner else "owner unknown"
    lines = [f"town {report.town.root} ({owner}; tmux server {report.server}: "
             f"{'up' if report.server_up else 'NOT RUNNING'})",
             f"dialect {report.dialect} ({report.dialect_reason or 'no evidence'})"]
    lines.append(f"{'AGENT':28} {'SESSION':28} {'STATE':8} {'PID':>7} {'UPTIME':>7} "
                 f"{'RESTARTS':>8}  {'BACKOFF':12} HELD")
    for r in report.agents:
        held = f"by {r.held.by}" if r.held else "-"
        lines.append(f"{r.identity.address:28} {r.identity.session:28} {r.state:8} "
                     f"{r.pid or '-':>7} {duration(r.uptime):>7} {r.restarts:>8}  "
                     f"{r.backoff or '-':12} {held}")
    if report.units is None:
        if not any(n.startswith("units not checked") for n in report.notes):
            lines.append("units: systemd is not running here (not checked)")
    else:
        lines.append(f"{'UNIT':36} {'STATE':10} {'ENABLED':9} LAST STATUS")
        for u in report.units:
            lines.append(f"{u.name:36} {u.active:10} {u.enabled or '-':9} {u.status or '-'}")
    lines += [f"note: {n}" for n in report.notes]
    problems = report.problems
    if problems:
        lines.append(f"NOT OK: {len(problems)} problem(s): " + "; ".join(problems))
    else:
        lines.append("OK: everything expected runs")
    return lines
