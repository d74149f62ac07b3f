"""The entry points and their contracts: what each takes, and which exceptions it may raise.

A *crash* is any exception outside an entry point's ``accepted`` tuple. The project's own
hierarchy (:class:`GastownError`: ConfigError, TownError, ToolError …) is accepted
everywhere; ``ValueError`` only where the docstring documents it for malformed input.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.fuzz import seeds as S
from bench.fuzz.gen import Gen
from gastown_units.errors import GastownError

PURE, PORT, SERVICE = "pure", "port", "service"
NOW = datetime(2026, 1, 25, 18, 0, tzinfo=UTC)
TIMES = ("2026-01-25T18:38:59.123456789-08:00", "9999-12-31T23:59:59Z",
         "0001-01-02T00:00:00+01:00", "2026-01-25T18:38:59Z")


class InvariantViolation(AssertionError):
    """A documented property does not hold (not an exception of the code under test)."""


class Workspace:
    """Per worker process: a scratch directory with a small town, built on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._town: Any = None
        self.extra: dict[str, Any] = {}

    @property
    def town(self) -> Any:
        if self._town is None:
            from gastown_units.town.layout import Town
            from tests.harness.town import make_town
            self._town = Town(make_town(self.root / "town").resolve())
        return self._town

    def put(self, rel: str, data: bytes | None) -> Path:
        """Write (or, for None, remove) a file of the town."""
        path = self.town.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in (path, path.with_name(path.name + ".bad")):
            if stale.is_dir():
                import shutil
                shutil.rmtree(stale)
            else:
                stale.unlink(missing_ok=True)
        if data is not None:
            path.write_bytes(data)
        return path


@dataclass(frozen=True)
class Target:
    name: str
    kind: str
    make: Callable[[Gen], Any]
    run: Callable[[Any, Workspace], None]
    accepted: tuple[type[BaseException], ...]
    contract: str


REGISTRY: dict[str, Target] = {}


def target(name: str, kind: str, make: Callable[[Gen], Any],
           accepted: tuple[type[BaseException], ...], contract: str
           ) -> Callable[[Callable[[Any, Workspace], None]], Callable[[Any, Workspace], None]]:
    def register(run: Callable[[Any, Workspace], None]) -> Callable[[Any, Workspace], None]:
        REGISTRY[name] = Target(name, kind, make, run, (GastownError, *accepted), contract)
        return run
    return register


def maybe(g: Gen, data: bytes, p: float = 0.05) -> bytes | None:
    """A file's bytes, or None (missing file) now and then."""
    return None if g.chance(p) else data


# --- town readers ------------------------------------------------------------------------

def _doc(seeds: tuple[Any, ...]) -> Callable[[Gen], bytes | None]:
    return lambda g: maybe(g, g.document(seeds))


@target("town.jsonfile.read_json", PURE, _doc(S.ALL_JSON), (ValueError,),
        "parsed JSON, None if missing; ValueError if malformed")
def _read_json(data: Any, ws: Workspace) -> None:
    from gastown_units.town.jsonfile import read_json
    read_json(ws.put("fuzz/doc.json", data))


@target("town.jsonfile.read_json_or_set_aside", PURE, _doc(S.ALL_JSON), (),
        "never raises: a damaged file is set aside and read as missing")
def _read_json_aside(data: Any, ws: Workspace) -> None:
    from gastown_units.town.jsonfile import read_json_or_set_aside
    read_json_or_set_aside(ws.put("fuzz/state.json", data))


@target("town.jsonfile.parse_time", PURE,
        lambda g: g.scalar() if g.chance(0.3) else g.mutate_text(g.pick(TIMES)),
        (), "a datetime or None if unusable; the datetime's timestamp() works (callers use it)")
def _parse_time(value: Any, ws: Workspace) -> None:
    from gastown_units.town.jsonfile import parse_time
    parsed = parse_time(value)
    if parsed is not None:
        parsed.timestamp()


@target("town.rigs.load_rigs", PURE, lambda g: maybe(g, g.document((S.RIGS_JSON,))),
        (ValueError,), "rigs by name; ValueError for a malformed file (then rig_prefixes)")
def _load_rigs(data: Any, ws: Workspace) -> None:
    from gastown_units.town.rigs import load_rigs, rig_prefixes
    ws.put("mayor/rigs.json", data)
    rigs = load_rigs(ws.town)
    rig_prefixes(ws.town, rigs)


@target("town.rigs.read_routes", PURE, lambda g: maybe(g, g.jsonl(S.ROUTES)), (),
        "well-formed routes; blank, # and malformed lines skipped (then route_prefixes, "
        "rig_database, agent_databases)")
def _read_routes(data: Any, ws: Workspace) -> None:
    from gastown_units.town.rigs import agent_databases, read_routes, route_prefixes
    ws.put(".beads/routes.jsonl", data)
    routes = read_routes(ws.town)
    prefixes = route_prefixes(ws.town)
    agent_databases(ws.town, prefixes)  # rig -> prefix, as rig_prefixes hands it on
    agent_databases(ws.town, {"gastown": "gt"})
    for route in routes:
        _ = route.rig


@target("town.rigs.default_branch", PURE,
        lambda g: maybe(g, g.document(({"default_branch": "main"}, {"default_branch": 3}))),
        (), "default_branch of <rig>/config.json; 'main' when missing or unreadable")
def _default_branch(data: Any, ws: Workspace) -> None:
    from gastown_units.town.rigs import default_branch
    ws.put("gastown/config.json", data)
    default_branch(ws.town, "gastown")


def _agent_input(g: Gen) -> dict[str, Any]:
    from gastown_units.town.identity import Role
    return {"town": maybe(g, g.document(S.SETTINGS), 0.3),
            "rig": maybe(g, g.document(S.SETTINGS), 0.3),
            "role": g.pick(list(Role)).value,
            "override": g.text() if g.chance(0.15) else None}


@target("town.agents.resolve_agent", PURE, _agent_input, (ValueError,),
        "the agent for a role; ValueError for an unusable override or settings file")
def _resolve_agent(inp: Any, ws: Workspace) -> None:
    from gastown_units.town.agents import resolve_agent
    from gastown_units.town.identity import Role
    ws.put("settings/config.json", inp["town"])
    ws.put("gastown/settings/config.json", inp["rig"])
    agent = resolve_agent(ws.town, Role(inp["role"]), "gastown", inp["override"])
    agent.is_running("node")


@target("town.agents.start_command", PURE,
        lambda g: {"env": {g.text() if g.chance(0.3) else g.pick(("GT_ROLE", "BD_ACTOR")):
                           g.text() for _ in range(g.rng.randrange(4))},
                   "argv": [g.text() for _ in range(g.rng.randrange(1, 4))],
                   "prompt": g.text() if g.chance(0.7) else None},
        (ValueError,), "exec env K=V … agent prompt; ValueError for an invalid variable name")
def _start_command(inp: Any, ws: Workspace) -> None:
    from gastown_units.town.agents import AgentProgram, start_command
    start_command(inp["env"], AgentProgram("x", tuple(inp["argv"])), inp["prompt"])


@target("town.wisp.read_wisp_config", PURE, lambda g: maybe(g, g.document((S.WISP,))),
        (ValueError,), "the wisp config; ValueError when the file exists but is malformed")
def _wisp(data: Any, ws: Workspace) -> None:
    from gastown_units.town.wisp import read_wisp_config
    ws.put(".beads-wisp/config/gastown.json", data)
    config = read_wisp_config(ws.town, "gastown")
    config.not_operational_reason()
    config.get("status")


@target("town.deacon_files.read_heartbeat", PURE,
        lambda g: maybe(g, g.document((S.HEARTBEAT,))), (),
        "missing or malformed file reads as 'no heartbeat' (then Heartbeat.age)")
def _heartbeat(data: Any, ws: Workspace) -> None:
    from gastown_units.town.deacon_files import read_heartbeat
    ws.put("deacon/heartbeat.json", data)
    read_heartbeat(ws.town).age(NOW)


@target("town.unit_state.load_state", PURE, _doc(S.ALL_JSON), (),
        "the saved state or {} (a corrupt file is set aside, not fatal)")
def _load_state(data: Any, ws: Workspace) -> None:
    from gastown_units.town.unit_state import load_state
    load_state(ws.put("daemon/units/fuzz.json", data))


@target("town.shutdown_marks.read_mark", PURE,
        lambda g: {"data": maybe(g, g.document((S.SHUTDOWN_MARK,)), 0.02),
                   "created": g.number() if g.chance(0.5) else None,
                   "hook": g.text() if g.chance(0.5) else None},
        (), "the marker or None; an unreadable one is returned as holding (then holds() and "
            "describe(), which the sweep logs for a held polecat)")
def _read_mark(inp: Any, ws: Workspace) -> None:
    from gastown_units.town.shutdown_marks import read_mark
    ws.put("daemon/shutdowns/gt-gastown-nux.json", inp["data"])
    mark = read_mark(ws.town, "gt-gastown-nux")
    if mark is not None:
        created = inp["created"]
        mark.holds(session_created=float(created) if isinstance(created, float) else None,
                   hook_bead=inp["hook"])
        mark.describe()


@target("town.patrols.patrol_enabled", PURE, lambda g: maybe(g, g.document((S.DAEMON_JSON,))),
        (ValueError,), "whether the patrol is enabled; ValueError for a malformed file")
def _patrols(data: Any, ws: Workspace) -> None:
    from gastown_units.town.patrols import patrol_enabled
    ws.put("mayor/daemon.json", data)
    patrol_enabled(ws.town, "witness")


def _polecat_tree(g: Gen) -> list[tuple[str, Any]]:
    entries = []
    for _ in range(g.rng.randrange(1, 4)):
        name = g.name().replace("/", "_").replace("\x00", "_") or "x"
        if name in (".", ".."):
            name = "dots"
        kind = g.pick(("git-file", "git-dir", "new", "empty"))
        content = None
        if kind == "git-file":
            content = (g.mutate_text(g.pick(S.GIT_FILES)) if g.chance(0.7)
                       else g.text()).encode("utf-8", "surrogatepass")
            if g.chance(0.1):
                content = g.raw_bytes()
        entries.append((name[:100], (kind, content)))
    return entries


@target("town.polecats (names, worktree, git_dir, last_activity)", PURE, _polecat_tree, (),
        "polecats on disk; git_dir None when .git is unusable; last_activity None if no file")
def _polecats(entries: Any, ws: Workspace) -> None:
    import shutil

    from gastown_units.town.polecats import git_dir, last_activity, polecat_names, worktree
    base = ws.town.root / "gastown" / "polecats"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    for name, (kind, content) in dict(entries).items():  # one entry per directory name
        try:
            tree = base / name
            tree.mkdir(exist_ok=True)
        except (OSError, ValueError):
            continue  # a name the file system refuses: not an input the reader can see
        if kind == "new":
            (tree / "gastown").mkdir(exist_ok=True)
        elif kind == "git-dir":
            (tree / ".git").mkdir(exist_ok=True)
        elif kind == "git-file":
            (tree / ".git").write_bytes(content)
    for name in polecat_names(ws.town, "gastown"):
        tree = worktree(ws.town, "gastown", name)
        if tree is not None:
            git_dir(tree)
            last_activity(tree)


def _identity_input(g: Gen) -> dict[str, Any]:
    from gastown_units.town.identity import Identity, Role
    r = g.rng.random()
    if r < 0.4:
        rig = g.pick(("gastown", "my-rig", "a-b-c", g.name()))
        name = g.pick(("nux", "max", "crew-x", g.name()))
        try:
            ident = Identity(g.pick(list(Role)), rig if g.chance(0.9) else None,
                             name if g.chance(0.5) else None)
            text = g.pick((ident.address, ident.legacy, ident.session, ident.bd_actor,
                           ident.bead_id(g.pick(("gt", "xy", "abc"))) or "boot"))
            text = g.mutate_text(text) if g.chance(0.3) else text
        except ValueError:
            text = g.text()
    else:
        text = g.text() if r < 0.8 else g.mutate_text(g.pick(S_IDENTITIES))
    return {"text": text, "rigs": [g.name() for _ in range(g.rng.randrange(3))] +
            (["gastown", "my-rig"] if g.chance(0.5) else []),
            "prefixes": {g.name(): g.pick(("gt", "xy", g.text())) for _ in
                         range(g.rng.randrange(3))}}


S_IDENTITIES = ("gastown/witness", "gastown/polecats/nux", "gt-gastown-nux",
                "gt-gastown-polecat-nux", "my-rig-crew-max", "deacon/dogs/boot",
                "xy-my-rig-refinery", "gastown/", "/gastown/nux/", "gt-gastown-crew-")


@target("town.identity.IdentityParser.parse", PURE, _identity_input, (ValueError,),
        "the identity a spelling names; ValueError says why not (then every rendering, "
        "the start profile, the theme and the pane-died hook)")
def _identity(inp: Any, ws: Workspace) -> None:
    from gastown_units.services.profiles import pane_died_hook, rig_theme, start_profile
    from gastown_units.town.agents import AgentProgram
    from gastown_units.town.identity import IdentityParser, Role
    parser = IdentityParser(rigs=inp["rigs"], prefixes=inp["prefixes"])
    ident = parser.parse(inp["text"])
    try:
        _ = (ident.address, ident.legacy, ident.bd_actor, ident.session,
             ident.git_author_name)
        ident.bead_id(inp["prefixes"].get(str(ident.rig)))
        ident.workdir(ws.town)
        ident.env(ws.town)
        start_profile(ident, AgentProgram("claude", ("claude",)))
        if ident.rig:
            rig_theme(ident).options(ident.session)
        if ident.role is Role.POLECAT:
            pane_died_hook(ident)
    except ValueError as exc:  # parse() accepted it: the renderings must work
        raise InvariantViolation(f"parsed {ident!r} but a rendering failed: {exc!r}") from exc


@target("town.names.valid_name", PURE, lambda g: g.text() if g.chance(0.5) else
        g.name() + g.pick(("", "\n", "\r", " ", "/", "\x00")), (),
        "True only for names of letters, digits, '_' and '-' (design rule 5)")
def _valid_name(text: Any, ws: Workspace) -> None:
    from gastown_units.town.names import valid_name
    if valid_name(text) and not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise InvariantViolation(f"valid_name({text!r}) is True")


# --- parsers of tool output ---------------------------------------------------------------

def _tool_text(seeds: tuple[Any, ...]) -> Callable[[Gen], str]:
    def make(g: Gen) -> str:
        if g.chance(0.1):
            return g.raw_bytes().decode("utf-8", "replace")
        return g.json_text(seeds)
    return make


@target("ports.beads.parse_issue_list", PURE, _tool_text(S.BD_OUTPUTS),
        (ValueError, RecursionError),
        "issues, None, or an error str; ValueError for non-JSON (RecursionError: the port "
        "catches it too, Beads._judge)")
def _parse_issue_list(text: Any, ws: Workspace) -> None:
    from gastown_units.ports.beads import agent_from_json, parse_issue_list
    parsed = parse_issue_list(text)
    if isinstance(parsed, list):
        for obj in parsed:
            agent_from_json(obj)


@target("ports.beads.parse_description_fields", PURE,
        lambda g: g.mutate_text(S.POLECAT_BEAD["description"]) if g.chance(0.5)
        else g.text(300), (), "key: value lines of a description (never raises)")
def _desc(text: Any, ws: Workspace) -> None:
    from gastown_units.ports.beads import names_no_match, parse_description_fields
    parse_description_fields(text)
    names_no_match(text)


@target("ports.beads.agent_from_json", PURE,
        lambda g: g.mutate(g.pick((S.POLECAT_BEAD, S.WITNESS_BEAD, S.TASK)))
        if g.chance(0.8) else {g.pick(("labels", "hook_bead", "description", "id")): g.value()},
        (), "an AgentBead from one object of bd's output (any dict parse_issue_list returns)")
def _agent_from_json(obj: Any, ws: Workspace) -> None:
    from gastown_units.ports.beads import agent_from_json
    if isinstance(obj, dict):
        agent_from_json(obj)


@target("ports.mail.parse_inbox", PURE, _tool_text(S.INBOXES), (ValueError,),
        "messages of gt mail inbox --json; ValueError for output that is not an array "
        "(Mail.inbox catches ValueError only)")
def _parse_inbox(text: Any, ws: Workspace) -> None:
    from gastown_units.ports.mail import parse_inbox
    from gastown_units.services.lifecycle_parse import is_lifecycle, parse_action
    from gastown_units.services.polecat_shutdown import is_shutdown_request, polecat_of
    for message in parse_inbox(text):
        is_lifecycle(message.subject)
        is_shutdown_request(message)
        polecat_of(message, "gastown")
        with contextlib.suppress(ValueError):
            parse_action(message.body)


def _panes(g: Gen) -> str:
    r = g.rng.random()
    if r < 0.3:
        return g.mutate_text(g.pick(S.PANES))
    if r < 0.8:
        fields = [g.pick(("hq-deacon", "gt-gastown-nux", g.name())),
                  g.pick((str(os.getpid()), "1", "0", "-1", "-5", str(2**40), str(2**70),
                          "1e3", "²", g.text())),
                  g.pick(("bash", "node", "claude", "2.0.1", "", g.text())),
                  g.pick(("0", "1", "")), g.pick(("1769364000", "nan", "inf", "-1e999", "1e400",
                                                  g.text())),
                  g.pick(("0", "1", "", "-3", g.text()))]
        return "\t".join(fields) + g.pick(("\n", "", "\r\n"))
    return g.text(200)


@target("ports.tmux.parse_panes + procs + sessions.pane_liveness", PURE, _panes, (),
        "a Snapshot, malformed lines skipped; then, for each pane as the keepers do, "
        "procs.process_tree/child_names (empty if the PID is gone) and pane_liveness")
def _parse_panes(text: Any, ws: Workspace) -> None:
    from gastown_units.ports import procs
    from gastown_units.ports.tmux import parse_panes
    from gastown_units.services.sessions import liveness
    from gastown_units.town.agents import AgentProgram
    snap = parse_panes(text)
    agent = AgentProgram("claude", ("claude",), frozenset({"node", "claude"}))
    for pane in snap.panes:
        procs.process_tree(pane.pid)
        procs.child_names(pane.pid)
        liveness(snap.first_pane(pane.session), agent)


@target("services.split_town.parse_sessions + in_town", PURE,
        lambda g: "".join(f"{g.name()}\t{g.pick(('/gt/deacon', '', g.text()))}\n"
                          for _ in range(g.rng.randrange(3))) if g.chance(0.7) else g.text(),
        (), "name: path of list-sessions; in_town True/False (unknown counts as yes)")
def _sessions(text: Any, ws: Workspace) -> None:
    from gastown_units.services.split_town import in_town, parse_sessions
    for path in parse_sessions(text).values():
        in_town(path, ws.town.root)


@target("runtime.tmux_host.parse_server_pid", PURE,
        lambda g: g.pick(("4242\n", "0", "", g.text(), g.pick(("²", "¹²", "٣", "4²"))
                          + g.pick(("", "\n")))),
        (), "the server PID or None if the output is not one")
def _server_pid(text: Any, ws: Workspace) -> None:
    from gastown_units.runtime.tmux_host import parse_server_pid
    parse_server_pid(text)


@target("runtime.notify.watchdog_period", PURE,
        lambda g: {"WATCHDOG_USEC": g.pick(("", "30000000", "0", "²", g.text())),
                   "WATCHDOG_PID": g.pick(("", "1", "²", g.text()))}, (),
        "seconds between pings, or None without a usable watchdog")
def _watchdog(env: Any, ws: Workspace) -> None:
    from gastown_units.runtime.notify import watchdog_period
    watchdog_period(env, pid=1)


@target("runtime.wake.ignored_watches", PURE, lambda g: g.raw_bytes(200), (),
        "watch descriptors ended by IN_IGNORED in a read of inotify events")
def _wake(data: Any, ws: Workspace) -> None:
    from gastown_units.runtime.wake import ignored_watches
    ignored_watches(data)


# --- pure service logic -----------------------------------------------------------------

@target("services.lifecycle_parse.parse_action", PURE,
        lambda g: g.json_text(({"action": "cycle"}, {"action": "stop"}, "restart"))
        if g.chance(0.6) else g.text(), (ValueError,),
        "the requested action; ValueError saying why the body is not understood")
def _parse_action(body: Any, ws: Workspace) -> None:
    from gastown_units.services.lifecycle_parse import is_lifecycle, parse_action
    is_lifecycle(body)
    parse_action(body)


def _float(g: Gen) -> float:
    """Any float (a tmux ``#{session_created}`` goes through ``float()``: nan, inf …)."""
    value = g.number()
    try:
        return float(value)
    except OverflowError:
        return float("inf")


def _clock(g: Gen) -> float:
    """``time.time()``: now, give or take a few days."""
    return 1_769_364_000.0 + g.rng.uniform(-5e5, 5e5)


def _config_float(g: Gen) -> float:
    """A duration from the configuration: what ``config._seconds`` accepts (inf and nan
    included: it accepts them)."""
    return g.pick((0.0, 0.001, 1.0, 30.0, 300.0, 1800.0, 3600.0, 1e9, float("inf"),
                   float("nan"), g.rng.uniform(0, 1e5)))


def _bead_time(g: Gen) -> float | None:
    """An epoch from ``parse_time(...).timestamp()`` (years 1 to 9999), or None."""
    return g.pick((None, _clock(g), -62135596800.0 + 86400, 253402300799.0,
                   g.rng.uniform(-62135596800.0, 253402300799.0)))


@target("services.lifecycle_parse.decide", PURE,
        lambda g: {"action": g.pick(("cycle", "restart", "shutdown", None)),
                   "sent": g.pick((g.text(), "2026-01-25T17:00:00Z", "9999-12-31T23:59:59-23:59",
                                   "0002-01-01T00:00:00+23:59", None)),
                   "max_age": _config_float(g),
                   "created": _float(g) if g.chance(0.5) else None,
                   "flags": [g.chance(0.5) for _ in range(6)],
                   "state": g.mutate(S.AGENT_STATE) if g.chance(0.7) else g.value()},
        (), "the decision on one request (pure; same facts, same answer); confirmed, "
            "without_request")
def _decide(inp: Any, ws: Workspace) -> None:
    from gastown_units.services.lifecycle_parse import (
        Action,
        RequestFacts,
        confirmed,
        decide,
        without_request,
    )
    from gastown_units.town.jsonfile import parse_time
    action = Action(inp["action"]) if inp["action"] else None
    f = inp["flags"]
    decide(RequestFacts(action, f[0], parse_time(inp["sent"]), NOW, inp["max_age"],
                        inp["created"], f[1], f[2], f[3], f[4], f[5], "parked"))
    if action is not None:
        confirmed(inp["state"], action)
        if isinstance(inp["state"], dict):
            without_request(inp["state"], action)


@target("services.polecat_shutdown.polecat_of", PURE,
        lambda g: {"subject": g.mutate_text(S.SHUTDOWN_MESSAGE["subject"]) if g.chance(0.5)
                   else g.text(), "body": g.mutate_text(S.SHUTDOWN_MESSAGE["body"])
                   if g.chance(0.5) else g.text(), "rig": g.pick(("gastown", g.name()))},
        (), "the polecat a shutdown request names, or None")
def _polecat_of(inp: Any, ws: Workspace) -> None:
    from gastown_units.ports.mail import Message
    from gastown_units.services.polecat_shutdown import is_shutdown_request, polecat_of
    message = Message("hq-1", "gastown/nux", "gastown/witness", inp["subject"], inp["body"],
                      None, False)
    is_shutdown_request(message)
    polecat_of(message, inp["rig"])


@target("services.polecat_plan.SweepState.from_json", PURE,
        lambda g: _json_or_text(g, (S.SWEEP_STATE,)) if g.chance(0.9) else g.value(),
        (), "typed state from the saved JSON; entries of the wrong type are dropped")
def _sweep_state(data: Any, ws: Workspace) -> None:
    from gastown_units.services.polecat_plan import SweepState
    json.dumps(SweepState.from_json(data).to_json())


def _json_or_text(g: Gen, seeds: tuple[Any, ...]) -> Any:
    text = g.json_text(seeds)
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def _plan_input(g: Gen) -> dict[str, Any]:
    facts = []
    for _ in range(g.rng.randrange(1, 5)):
        facts.append({
            "session": g.pick(("gt-gastown-nux", "gt-gastown-max", g.name())),
            "liveness": g.pick(("running", "zombie", "missing")),
            "created": _float(g) if g.chance(0.5) else None,
            "hook": g.pick(("", "gt-a1b2c", g.text())), "state": g.pick(
                ("working", "spawning", "done", "", g.text())),
            "updated": _bead_time(g),
            "hooked": g.pick((None, "open", "closed", "tombstone", g.text())),
            "busy": g.chance(0.2), "elsewhere": g.text() if g.chance(0.1) else "",
            "mark": {"at": g.pick((float("inf"), _bead_time(g) or 0.0)),
                     "hook": g.pick((None, "gt-a1b2c")),
                     "readable": g.chance(0.7)} if g.chance(0.4) else None})
    return {"facts": facts, "state": _json_or_text(g, (S.SWEEP_STATE,)),
            "tracker": g.document((S.RESTARTS,)), "now": _clock(g),
            "limits": [_config_float(g), _config_float(g), g.pick((1, 3, 100)),
                       _config_float(g)]}


@target("services.polecat_plan.plan_sweep", PURE, _plan_input, (),
        "the plan of one sweep (pure), from any facts, saved state and restart file; the "
        "new state and tracker then saved")
def _plan_sweep(inp: Any, ws: Workspace) -> None:
    from gastown_units.services.polecat_plan import Limits, PolecatFacts, SweepState, plan_sweep
    from gastown_units.services.restart_tracker import Policy, RestartTracker
    from gastown_units.services.sessions import Liveness
    from gastown_units.town.jsonfile import write_json_atomic
    from gastown_units.town.shutdown_marks import ShutdownMark
    path = ws.put("daemon/units/restarts.json", inp["tracker"])
    tracker = RestartTracker(path, Policy())
    tracker.load()
    facts = []
    for f in inp["facts"]:
        m = f["mark"]
        mark = ShutdownMark(f["session"], m["at"], "w", m["hook"], readable=m["readable"]
                            ) if m else None
        facts.append(PolecatFacts(f["session"], f"gastown/{f['session']}", "gastown", "nux",
                                  "gt-gastown-polecat-nux", Liveness(f["liveness"]),
                                  f["created"], f["hook"], f["state"], f["updated"],
                                  f["hooked"], f["busy"], mark, f["elsewhere"]))
    lim = inp["limits"]
    plan = plan_sweep(facts, SweepState.from_json(inp["state"]), tracker,
                      Limits(lim[0], lim[1], lim[2], lim[3]), inp["now"])
    plan.tracker.save()
    write_json_atomic(ws.town.root / "daemon/units/sweep.json", plan.state.to_json())


@target("services.restart_tracker.RestartTracker", PURE,
        lambda g: {"data": maybe(g, g.document((S.RESTARTS,))), "now": _clock(g),
                   "key": g.pick(("gt-gastown-nux", g.name()))}, (),
        "load (a malformed file is set aside), blocked/loops_now/record/stable, save")
def _tracker(inp: Any, ws: Workspace) -> None:
    from gastown_units.services.restart_tracker import Policy, RestartTracker
    tracker = RestartTracker(ws.put("daemon/units/restarts.json", inp["data"]), Policy())
    tracker.load()
    key, now = inp["key"], inp["now"]
    for existing in list(tracker.agents):
        tracker.blocked(existing, now)
        tracker.loops_now(existing, now)
        tracker.stable(existing, now)
    tracker.save()
    tracker.record(key, now)
    tracker.save()


@target("services.auto_spawn (load_book, candidates, record)", PURE,
        lambda g: {"book": _json_or_text(g, (S.BOOK,)),
                   "ready": _json_or_text(g, ([S.READY, S.TASK], [S.POLECAT_BEAD])),
                   "now": _clock(g), "backoff": _config_float(g),
                   "prefix": g.pick((None, "gt-", g.text()))}, (),
        "the persisted book (malformed entries dropped), the issues to sling now from bd "
        "ready's output, the book saved")
def _auto_spawn(inp: Any, ws: Workspace) -> None:
    from gastown_units.services.auto_spawn import (
        candidates,
        dump_book,
        forget_old,
        load_book,
        record,
    )
    book = load_book(inp["book"])
    ready = inp["ready"] if isinstance(inp["ready"], list) else []
    ready = [r for r in ready if isinstance(r, dict)]  # what parse_issue_list hands on
    todo = candidates(ready, book, inp["now"], backoff=inp["backoff"], prefix=inp["prefix"])
    for issue in todo[:2]:
        record(book, issue, ok=False, started=inp["now"])
    forget_old(book, inp["now"])
    json.dumps(dump_book(book))


@target("services.stuck_ladder (Entry.from_json, next_step)", PURE,
        lambda g: {"entry": _json_or_text(g, (S.LADDER,)), "activity": _clock(g),
                   "now": _clock(g), "threshold": _config_float(g),
                   "interval": _config_float(g)}, (),
        "a saved ladder entry or None; the next step or None")
def _ladder(inp: Any, ws: Workspace) -> None:
    from gastown_units.services.stuck_ladder import Entry, is_reset, next_step
    entry = Entry.from_json(inp["entry"])
    next_step(entry, inp["activity"], inp["now"], threshold=inp["threshold"],
              interval=inp["interval"])
    is_reset(entry, inp["activity"], inp["now"], inp["threshold"])
    if entry is not None:
        json.dumps(entry.to_json())


@target("services.rig_gate.label_gate", PURE,
        lambda g: g.mutate({"id": "gt-rig-gastown", "labels": ["status:parked"]})
        if g.chance(0.7) else g.value(), (), "a closed Gate for docked/parked labels, or None")
def _label_gate(bead: Any, ws: Workspace) -> None:
    from gastown_units.services.rig_gate import label_gate
    label_gate(bead if isinstance(bead, dict) else None, "gt-rig-gastown")


# --- configuration ---------------------------------------------------------------------------

def _knob_value(g: Gen) -> str:
    return g.pick(("30", "5m", "1h", "250ms", "0", "-1", "true", "off", "4", "", "nan",
                   "NaNs", "inf", "1e999", "~", "~root/x", "~nosuchuser-fuzz/x", "²", "²s",
                   "1.5.5s", " 7 ")) if g.chance(0.4) else g.text()


def _environ(g: Gen) -> dict[str, str]:
    from gastown_units.config import KNOBS
    env = {}
    for knob in KNOBS:
        if g.chance(0.15):
            value = _knob_value(g)
            env[knob.env] = value.replace("\x00", "") if g.chance(0.9) else value
    return env


@target("config.Settings.load", PURE, _environ, (),
        "defaults, then the environment; ConfigError names the bad variable (a NaN duration "
        "counts as accepted garbage: InvariantViolation)")
def _settings(env: Any, ws: Workspace) -> None:
    import dataclasses
    import math

    from gastown_units.config import Settings
    settings = Settings.load(env)
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, float) and math.isnan(value):
            raise InvariantViolation(f"{f.name} loaded as NaN (from {env!r})")


@target("config.Knob.parse (the CLI's option parsers)", PURE,
        lambda g: {"knob": g.rng.randrange(1000), "text": _knob_value(g)}, (ValueError,),
        "each knob's parser: a value, or ValueError (the CLI turns it into BadParameter)")
def _knob(inp: Any, ws: Workspace) -> None:
    from gastown_units.config import KNOBS
    KNOBS[inp["knob"] % len(KNOBS)].parse(inp["text"])


def pure_targets() -> list[Target]:
    return [t for t in REGISTRY.values() if t.kind == PURE]
