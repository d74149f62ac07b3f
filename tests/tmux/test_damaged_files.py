"""The corrupt-file matrix: no damaged file ever costs a running agent (issue 9, 2/3/6).

Every town and state file is replaced, in turn, by each kind of damage; every service that
reads it runs ``--once`` against a town whose agents already run on a private tmux server.
The agents' runtime comes from ``settings/config.json`` (no ``--agent-command``), under a
process name that is not Claude's: a damaged file that made a service fall back to the
default runtime would judge them zombies and kill them. Assertions per run: no traceback,
exit 0, 1 or 78 (78 with one "configuration error" line), a failing run names the file,
a run that noticed the damage names the file in its last ``STATUS=`` (its own notify
socket, as under systemd), and every agent's pane PID is unchanged. The agents are
started once for the module.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.gitrig import add_polecat, make_rig_repos
from tests.harness.keeper import service_env
from tests.harness.poll import poll_until
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import AGENT, STANDINS, hook_work, make_town

RIG = "gastown"
POLECAT = "toast"
ARGV0 = "standin"  # the agents' process name: not Claude's (node, claude)
SESSIONS = ("hq-deacon", f"gt-{RIG}-witness", f"gt-{RIG}-refinery", f"gt-{RIG}-{POLECAT}")

ALL = ("deacon-keeper", "witness", "refinery", "polecat-health", "lifecycle-mail")
RIGGED = ("witness", "refinery", "polecat-health")

# file (relative to the town) -> the services that read it
FILES: dict[str, tuple[str, ...]] = {
    "mayor/rigs.json": ALL,
    "mayor/town.json": ALL,
    "mayor/daemon.json": ("deacon-keeper", "witness", "refinery"),
    "settings/config.json": ALL,
    f"{RIG}/settings/config.json": RIGGED,
    f"{RIG}/config.json": ("polecat-health", "witness"),
    ".beads/routes.jsonl": (*RIGGED, "lifecycle-mail"),
    f".beads-wisp/config/{RIG}.json": RIGGED,
    "deacon/heartbeat.json": ("deacon-keeper",),
    "daemon/restart_state.json": ("polecat-health",),
    f"daemon/units/witness-{RIG}.json": ("witness",),
    "daemon/units/polecat-health.json": ("polecat-health",),
    f"{RIG}/polecats/{POLECAT}/{RIG}/.git": ("witness", "polecat-health"),
}
STATE_FILES = {"daemon/restart_state.json", f"daemon/units/witness-{RIG}.json",
               "daemon/units/polecat-health.json"}

WRONG_TYPES: dict[str, bytes] = {
    "settings/config.json": b'{"default_agent": 5}',
    f"{RIG}/settings/config.json": b'{"role_agents": {"witness": ["standin"]}}',
    "mayor/rigs.json": b'{"rigs": {"gastown": 5, "-x": {}}}',
    "daemon/restart_state.json": b'{"agents": {"gt-gastown-toast": 5}, "x": [1e999]}',
    f".beads-wisp/config/{RIG}.json": b'{"values": [], "blocked": 5}',
    "mayor/daemon.json": b'{"patrols": {"deacon": {"enabled": "no"}}}',
}
DAMAGES = ("garbage", "truncated", "wrong-types", "empty", "directory", "dangling", "nested")


def damage(path: Path, kind: str, rel: str) -> None:
    """Replace ``path`` with one kind of damage."""
    remove(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "directory":
        path.mkdir()
        (path / "x").write_text("{}")
    elif kind == "dangling":
        path.symlink_to(path.parent / "no-such-target")
    else:
        path.write_bytes({
            "garbage": b"\xff\xfe\x80 not json \xc3\x28{[",
            "truncated": b'{"version": 1, "rigs": {"gastown": {"beads": ',
            "wrong-types": WRONG_TYPES.get(rel, b'[5, "labels", {"labels": 5}]'),
            "empty": b"",
            "nested": b"[" * 100_000,
        }[kind])


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()


@dataclass
class Town:
    root: Path
    server: PrivateTmux
    pids: dict[str, int]


def argv(service: str, town: Path, socket: str) -> list[str]:
    rig = ("--rig", RIG) if service in ("witness", "refinery") else ()
    degraded = ("--degraded", "true") if service == "deacon-keeper" else ()
    return [sys.executable, "-m", "gastown_units", "run", service, "--town", str(town),
            "--tmux-socket", socket, "--kill-grace", "1", "--bd-bin", str(STANDINS / "bd"),
            "--gt-bin", str(STANDINS / "gt"), "--once", *rig, *degraded]


@dataclass
class Run:
    returncode: int
    stderr: str
    statuses: list[str]  # every STATUS= the service sent to its NOTIFY_SOCKET


def run(service: str, town: Town) -> Run:
    """One ``--once`` pass with a notify socket of its own, as under systemd."""
    with tempfile.TemporaryDirectory(prefix="gtu-notify-") as tmp, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        address = f"{tmp}/notify"
        sock.bind(address)
        result = subprocess.run(argv(service, town.root, town.server.socket),
                                capture_output=True, text=True, timeout=120,
                                env=service_env({"NOTIFY_SOCKET": address}))
        sock.setblocking(False)
        statuses = []
        with contextlib.suppress(BlockingIOError):
            while True:
                message = sock.recv(65536).decode("utf-8", "replace")
                statuses += [line.removeprefix("STATUS=") for line in message.splitlines()
                             if line.startswith("STATUS=")]
    return Run(result.returncode, result.stderr, statuses)


def traceback(stderr: str) -> bool:
    """Our process printed a Python traceback (a line that starts one). A tool's traceback
    quoted inside one of our error lines (the stand-in ``bd`` choking on the damaged
    routes file: "bd show failed: Traceback …") is the tool's failure, reported as such."""
    return any(line.startswith("Traceback (most recent call last)")
               for line in stderr.splitlines())


def pids(server: PrivateTmux) -> dict[str, int]:
    out = server.tmux("list-panes", "-a", "-F", "#{session_name}\t#{pane_pid}").stdout
    return {s: int(p) for s, _, p in (line.partition("\t") for line in out.splitlines())}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Town]:
    """A town whose four agents run; its runtime is a custom agent in settings."""
    root = make_town(tmp_path_factory.mktemp("damaged") / "town")
    (root / "settings" / "config.json").write_text(json.dumps({
        "type": "town-settings", "version": 1, "default_agent": ARGV0,
        "agents": {ARGV0: {"command": "env",
                           "args": [f"STANDIN_AGENT_ARGV0={ARGV0}", sys.executable,
                                    str(AGENT)]}}}))
    (root / RIG / "settings").mkdir(parents=True, exist_ok=True)
    (root / RIG / "settings" / "config.json").write_text(json.dumps({"agent": ARGV0}))
    (root / RIG / "config.json").write_text(json.dumps({
        "type": "rig", "version": 1, "name": RIG, "default_branch": "main"}))
    (root / ".beads-wisp" / "config").mkdir(parents=True)
    (root / ".beads-wisp" / "config" / f"{RIG}.json").write_text(json.dumps(
        {"rig": RIG, "values": {}, "blocked": []}))
    (root / "mayor" / "daemon.json").write_text(json.dumps({
        "type": "daemon-patrol-config", "version": 1, "patrols": {"deacon": {"enabled": True}}}))
    server = PrivateTmux().start()
    try:
        make_rig_repos(root / RIG)
        tree = add_polecat(root / RIG, RIG, POLECAT)
        hook_work(root, RIG, POLECAT)
        server.tmux("new-session", "-d", "-s", f"gt-{RIG}-{POLECAT}", "-c", str(tree),
                    f"exec env STANDIN_AGENT_ARGV0={ARGV0} {sys.executable} {AGENT}")
        town = Town(root, server, {})
        for service in ("deacon-keeper", "witness", "refinery", "polecat-health"):
            result = run(service, town)
            assert result.returncode == 0, (service, result.stderr)
        town.pids = poll_until(
            lambda: (p := pids(server)) and all(s in p for s in SESSIONS)
            and all(server.pane(s) and server.pane(s)[1] == ARGV0 for s in SESSIONS) and p,
            timeout=30, what="every agent running")
        (root / "deacon" / "heartbeat.json").write_text(json.dumps({
            "timestamp": "2026-01-25T18:30:00Z", "cycle": 1}))
        (root / "daemon" / "restart_state.json").write_text(json.dumps({"agents": {}}))
        for rel in sorted(STATE_FILES):  # our services write them once they have news
            if not (root / rel).exists():
                (root / rel).write_text(json.dumps({"ladder": {}, "incidents": {}}))
        assert (root / RIG / "polecats" / POLECAT / RIG / ".git").is_file()
        yield town
    finally:
        server.stop()


CASES = [(rel, kind) for rel in FILES for kind in DAMAGES]
RUNS = sum(len(FILES[rel]) for rel, _ in CASES)
TALLY = {"runs": 0, "tracebacks": 0, "lost": 0}


def test_matrix_size() -> None:
    print(f"\n{len(FILES)} files x {len(DAMAGES)} damages x 1-{len(ALL)} services "
          f"= {RUNS} runs")
    assert RUNS >= 200


@pytest.mark.parametrize(("rel", "kind"), CASES, ids=[f"{r}:{k}" for r, k in CASES])
def test_a_damaged_file_costs_no_agent(running: Town, rel: str, kind: str) -> None:
    path = running.root / rel
    saved = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    damage(path, kind, rel)
    try:
        with ThreadPoolExecutor(max_workers=len(FILES[rel])) as pool:
            results = dict(zip(FILES[rel], pool.map(lambda s: run(s, running), FILES[rel]),
                               strict=True))
    finally:
        remove(path)
        aside = path.with_name(path.name + ".bad")
        remove(aside)
        if saved is not None:
            path.write_bytes(saved)
    now = pids(running.server)
    TALLY["runs"] += len(results)
    TALLY["tracebacks"] += sum(traceback(r.stderr) for r in results.values())
    TALLY["lost"] += sum(now.get(s) != p for s, p in running.pids.items())
    for service, result in results.items():
        where = f"{service} with {rel} {kind}: rc {result.returncode}\n{result.stderr}"
        assert not traceback(result.stderr), where
        assert result.returncode in (0, 1, 78), where
        if result.returncode == 78:
            assert "configuration error" in result.stderr, where
        if result.returncode != 0 and rel not in STATE_FILES:
            assert rel in result.stderr or path.name in result.stderr, where
        # What a damaged town file blocks is said in STATUS=, naming the file (3).
        if rel not in STATE_FILES and (rel in result.stderr or path.name in result.stderr):
            last = result.statuses[-1] if result.statuses else ""
            assert rel in last or path.name in last, f"{where}\nSTATUS={last}"
    assert now == running.pids, f"agents lost with {rel} {kind}: {running.pids} -> {now}"


def test_a_polecat_dir_named_with_a_newline_is_skipped(running: Town) -> None:
    """tmux would store another session name: the name is skipped with a warning, and the
    other polecats are still supervised."""
    odd = running.root / RIG / "polecats" / "bad\nname"
    odd.mkdir()
    try:
        for service in ("polecat-health", "witness"):
            result = run(service, running)
            assert result.returncode == 0, result.stderr
            assert not traceback(result.stderr)
            assert "no usable name" in result.stderr, result.stderr
    finally:
        odd.rmdir()
    assert pids(running.server) == running.pids


def test_tally(running: Town) -> None:
    """The closing count (runs after the matrix: pytest keeps file order)."""
    print(f"\n{len(FILES)} files x {len(DAMAGES)} damages = {len(CASES)} cases, "
          f"{TALLY['runs']} service runs, {TALLY['tracebacks']} tracebacks, "
          f"{TALLY['lost']} agents lost")
    assert TALLY["tracebacks"] == 0 and TALLY["lost"] == 0
    assert pids(running.server) == running.pids
