"""Gas Town's own commands beside the running services, in a [J] and in an [L] town:
``gt down`` leaves the town down, ``gt up`` brings it back without a second daemon, an
unlinked ``daemon.lock`` is re-taken, ``gt daemon status`` tells the truth (gastown.md
§1.7, gastown-2026.md §1.7, §3.0, §6.11, §8 rows 8-10).

The [L] town's agents live on its own tmux socket ``<base>-<sha256(town)[:6]>``, the one
the [L] stand-in ``gt`` uses (``tmux -u -L``); the services are given no socket and must
derive it, and name the sessions ``hq-deacon``, ``gt-witness``, ``gt-refinery``. A
supervisor that ignored [L] would start [J]-named agents elsewhere: every ``_all_up`` on
the [L] server below would time out, and ``gt down`` would stop nothing of theirs.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from gastown_units.ports.locks import flock_holders
from gastown_units.town.dialect import socket_name
from tests.harness import keeper
from tests.harness.poll import poll_until, wait_gone
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import STANDINS, control_agent, make_town

SHORT_BACKOFF_NS = 1_000_000_000

GT = STANDINS / "gt"
RIG = "gastown"  # bead prefix gt
FAST = ("--interval", "0.3")
# the reasons the first service to see an [L] gt down can write in the mark
# Which one a service sees first depends on timing: under load `gt up` may already have
# made the new lock file when the service looks, so the unlink is seen as a replacement.
L_DOWN_REASONS = ("gt down holds daemon/shutdown.lock", "daemon/shutting-down)",
                  "daemon/daemon.lock was unlinked", "daemon/daemon.lock was replaced")


def dialect_of(town: Path) -> str:
    return (town / ".standin" / "gt.dialect").read_text().strip()


def sessions(town: Path) -> tuple[str, ...]:
    """Deacon, witness and refinery of the rig under the town's dialect's names."""
    if dialect_of(town) == "L":
        return ("hq-deacon", "gt-witness", "gt-refinery")
    return ("hq-deacon", f"gt-{RIG}-witness", f"gt-{RIG}-refinery")


def gt(town: Path, server: PrivateTmux, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in server.env().items()
           if not k.startswith(("GT_", "BD_", "BEADS_", "STANDIN_"))}
    if dialect_of(town) == "J":  # [J] gt: the default server, here our private one
        env["GT_STANDIN_TMUX_SOCKET"] = server.socket
        env["GT_TMUX_SOCKET"] = server.socket
    # [L] gt derives the town's socket itself (tmux -u -L <base>-<hash6>)
    return subprocess.run([sys.executable, str(GT), *args], cwd=town, env=env,
                          capture_output=True, text=True, timeout=60)


def resume(town: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gastown_units", "resume", "--town",
                           str(town)], capture_output=True, text=True, timeout=60,
                          env=keeper.service_env())


def mark(town: Path) -> Path:
    return town / "daemon" / "units" / "town-down.json"


def beats(town: Path) -> int:
    """The deacon keeper's passes so far (daemon/state.json)."""
    return int(json.loads((town / "daemon" / "state.json").read_text())["heartbeat_count"])


def gt_daemons(town: Path) -> list[int]:
    """`gt daemon run` processes of this town."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        cmd = proc.info.get("cmdline") or []
        if cmd[-2:] == ["daemon", "run"] and proc.info.get("cwd") == str(town):
            found.append(proc.info["pid"])
    return found


def no_restart_for(town: Path, server: PrivateTmux, passes: int) -> None:
    """The keepers run ``passes`` more passes and start nothing meanwhile (polled)."""
    start = beats(town)

    def done() -> bool:
        assert not server.sessions() & set(sessions(town)), server.sessions()
        return beats(town) >= start + passes
    poll_until(done, timeout=60, what=f"{passes} more passes of the deacon keeper")


def start_service(service: str, town: Path, server: PrivateTmux, *args: str
                  ) -> subprocess.Popen[str]:
    """The long-running service: [J] given our private server; [L] given no socket, so
    it must find the town's own (the one ``server`` runs on)."""
    if dialect_of(town) == "J":
        return keeper.start(service, town, server.socket, *args)
    argv = keeper.service_argv(service, town, server.socket, *args)
    at = argv.index("--tmux-socket")
    del argv[at:at + 2]
    return subprocess.Popen(argv, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=keeper.service_env())


@pytest.fixture(params=["J", "L"])
def gt_town(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    dialect = str(request.param)
    town = make_town(tmp_path / "town", dialect=dialect)
    (town / ".standin").mkdir(exist_ok=True)
    (town / ".standin" / "gt.dialect").write_text(dialect)
    (town / ".standin" / "gt.down-grace").write_text("1")
    if dialect == "L":  # the Deacon's restart backoff of §6.10, 1 s here (30 s by default)
        daemon_json = town / "mayor" / "daemon.json"
        data = json.loads(daemon_json.read_text())
        data["patrols"]["restart_tracker"] = {"initial_backoff": SHORT_BACKOFF_NS}
        daemon_json.write_text(json.dumps(data, indent=2))
    return town


@pytest.fixture
def tmux_server(gt_town: Path) -> Iterator[PrivateTmux]:
    """[J]: a private server of unique name; [L]: a private server on the town's own
    socket name (the [L] stand-in's ``tmux -u -L <l_socket_name(town)>``)."""
    name = socket_name(str(gt_town)) if dialect_of(gt_town) == "L" else None
    server = PrivateTmux(socket=name)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def services(gt_town: Path, tmux_server: PrivateTmux
             ) -> Iterator[Callable[[], dict[str, str]]]:
    """deacon-keeper, witness and refinery of the rig, running; the fixture's value stops
    them and returns their output (each must exit 0)."""
    procs: dict[str, subprocess.Popen[str]] = {}
    outputs: dict[str, str] = {}

    def stop() -> dict[str, str]:
        for name, proc in procs.items():
            if name not in outputs:
                code, out = keeper.stop(proc)
                outputs[name] = out
                assert code == 0, f"{name} exited {code}:\n{out}"
        return outputs
    try:
        procs["deacon-keeper"] = start_service("deacon-keeper", gt_town, tmux_server,
                                               "--degraded", "true", *FAST)
        procs["witness"] = start_service("witness", gt_town, tmux_server, "--rig", RIG,
                                         *FAST)
        procs["refinery"] = start_service("refinery", gt_town, tmux_server, "--rig", RIG,
                                          *FAST)
        yield stop
    finally:
        for name, proc in procs.items():
            if name not in outputs:
                keeper.stop(proc)


def _all_up(town: Path, server: PrivateTmux) -> dict[str, int]:
    panes = {s: server.pane(s) for s in sessions(town)}
    if all(p and p[1] == "claude" for p in panes.values()):
        return {s: p[0] for s, p in panes.items() if p}
    return {}


def test_gt_down_leaves_the_town_down_and_gt_up_brings_it_back_gastown_2026_6_11(
        gt_town: Path, tmux_server: PrivateTmux,
        services: Callable[[], dict[str, str]]) -> None:
    l_town = dialect_of(gt_town) == "L"
    poll_until(lambda: _all_up(gt_town, tmux_server), timeout=60,
               what="deacon, witness, refinery")
    lock = gt_town / "daemon" / "daemon.lock"
    holders = set(flock_holders(lock, "READ"))
    assert len(holders) == 3
    down = gt(gt_town, tmux_server, "down")
    assert down.returncode == 0, down.stderr
    assert not tmux_server.sessions() & set(sessions(gt_town))
    data = json.loads(mark(gt_town).read_text())
    if l_town:
        # [L] gt down also unlinks daemon.lock, held without daemon.pid (§6.11): re-taken
        assert "✓ Daemon stopped" in down.stdout, down.stdout
        assert any(r in data["reason"] for r in L_DOWN_REASONS), data
        poll_until(lambda: lock.exists() and set(flock_holders(lock, "READ")) == holders,
                   timeout=30, what="every service holding a shared lock on the new file")
    else:
        assert "gt down holds daemon/shutdown.lock" in data["reason"]
    no_restart_for(gt_town, tmux_server, passes=10)  # ~3 s of passes, nothing started
    status = gt(gt_town, tmux_server, "daemon", "status")
    if l_town:  # [L]: the held lock is the truth; PID unknown, state.json's lines
        lines = status.stdout.splitlines()
        state = json.loads((gt_town / "daemon" / "state.json").read_text())
        assert lines[:3] == ["● Daemon is running (PID 0)", f"  Town: {gt_town}",
                             f"  Started: {state['started_at']}"], status.stdout
    else:
        assert status.stdout.startswith("○ Daemon is not running")  # daemon.pid is truth
    assert not (gt_town / "daemon" / "daemon.pid").exists()

    up = gt(gt_town, tmux_server, "up")
    if l_town:  # [L] gt up sees the held lock: a daemon runs, none started
        assert "✓ Daemon: running (PID unknown)" in up.stdout, up.stdout
        assert up.returncode == 0, up.stdout + up.stderr
    else:  # [J] gt up starts `gt daemon run`, which loses our lock and exits: reported
        assert "✗ Daemon: daemon already running (lock held by another process)" in up.stdout
        assert up.returncode == 1
    assert gt_daemons(gt_town) == []
    assert flock_holders(lock, "WRITE") == []
    started = poll_until(lambda: _all_up(gt_town, tmux_server), timeout=30,
                         what="gt up's agents")
    assert "hq-mayor" in tmux_server.sessions()
    poll_until(lambda: not mark(gt_town).exists(), timeout=30,
               what="the town-down mark cleared by gt up's Deacon")
    # gt up's agents are kept, not replaced; a crash is repaired again (we act again)
    before = beats(gt_town)
    poll_until(lambda: beats(gt_town) >= before + 3, timeout=30, what="passes after gt up")
    assert _all_up(gt_town, tmux_server) == started
    control_agent(gt_town / "deacon", "crash")
    poll_until(lambda: (p := tmux_server.pane("hq-deacon")) and p[1] == "claude"
               and p[0] != started["hq-deacon"], timeout=30,
               what="a crashed Deacon restarted after gt up")
    out = services()
    assert "town down since" in out["deacon-keeper"]
    assert "gt up): the town is up again, resuming" in "".join(out.values())
    for name, text in out.items():
        assert "Traceback" not in text, (name, text)


@pytest.mark.parametrize("gt_town", ["L"], indirect=True)
def test_gt_up_right_after_an_l_gt_down_finds_our_lock_gastown_2026_6_11(
        gt_town: Path, tmux_server: PrivateTmux) -> None:
    """``gt down && gt up`` in an [L] town, the services on a long interval: gt down's
    unlink of daemon.lock must be answered at once (re-taken before gt up looks), else
    gt up starts a real ``gt daemon run`` on a new file, which wins the town."""
    lock = gt_town / "daemon" / "daemon.lock"
    slow = ("--interval", "60")
    procs: list[subprocess.Popen[str]] = []
    try:
        procs.append(start_service("deacon-keeper", gt_town, tmux_server, "--degraded",
                                   "true", *slow))
        for service in ("witness", "refinery"):
            procs.append(start_service(service, gt_town, tmux_server, "--rig", RIG, *slow))
        poll_until(lambda: _all_up(gt_town, tmux_server), timeout=60, what="agents")
        holders = {p.pid for p in procs}
        poll_until(lambda: set(flock_holders(lock, "READ")) == holders, timeout=30,
                   what="the three services holding daemon.lock")
        down = gt(gt_town, tmux_server, "down")
        up = gt(gt_town, tmux_server, "up")
        assert down.returncode == 0 and "✓ Daemon stopped" in down.stdout, down.stdout
        assert "✓ Daemon: running (PID unknown)" in up.stdout, up.stdout
        assert up.returncode == 0, up.stdout + up.stderr
        assert gt_daemons(gt_town) == []
        assert lock.exists() and flock_holders(lock, "READ")
        assert flock_holders(lock, "WRITE") == []
        data = json.loads(mark(gt_town).read_text())  # written by the woken pass
        assert any(r in data["reason"] for r in L_DOWN_REASONS), data
        poll_until(lambda: set(flock_holders(lock, "READ")) == holders, timeout=30,
                   what="every service on the new file")
        assert all(p.poll() is None for p in procs)
        for proc in procs:
            code, out = keeper.stop(proc)
            assert code == 0, out
            assert "Traceback" not in out
    finally:
        for proc in procs:
            keeper.stop(proc)
        for pid in gt_daemons(gt_town):  # started by gt up when it lost the race
            psutil.Process(pid).terminate()
            wait_gone(pid)


def test_resume_command_ends_the_mark_and_the_target_start_would_too(
        gt_town: Path, tmux_server: PrivateTmux,
        services: Callable[[], dict[str, str]]) -> None:
    poll_until(lambda: _all_up(gt_town, tmux_server), timeout=60,
               what="deacon, witness, refinery")
    assert gt(gt_town, tmux_server, "down").returncode == 0
    no_restart_for(gt_town, tmux_server, passes=5)
    done = resume(gt_town)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("town resumed (it was down since ")
    assert "3 service(s) woken" in done.stdout
    poll_until(lambda: _all_up(gt_town, tmux_server), timeout=60, what="agents started again")
    again = resume(gt_town)
    assert again.stdout.strip() == "the town is not marked down: nothing to resume"
    services()


def test_unlinked_lock_is_retaken_and_marks_the_town_down_gastown_2026_8_8(
        gt_town: Path, tmux_server: PrivateTmux,
        services: Callable[[], dict[str, str]]) -> None:
    lock = gt_town / "daemon" / "daemon.lock"
    pids = poll_until(lambda: _all_up(gt_town, tmux_server), timeout=60, what="agents")
    holders = set(flock_holders(lock, "READ"))
    assert len(holders) == 3
    if dialect_of(gt_town) == "L":  # [L] gt daemon stop unlinks a lock held without
        stop = gt(gt_town, tmux_server, "daemon", "stop")  # daemon.pid (§6.11)
        assert stop.returncode == 0, stop.stderr
        assert stop.stdout.strip() == "✓ Daemon stopped", stop.stdout
    else:  # what [L] gt down / gt daemon stop do (a [J] gt has no such stop)
        lock.unlink()
    poll_until(lambda: lock.exists() and set(flock_holders(lock, "READ")) == holders,
               timeout=30, what="every service holding a shared lock on the new file")
    fd = os.open(lock, os.O_RDWR)
    try:  # a `gt daemon run` started now loses
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    assert "daemon/daemon.lock was unlinked" in json.loads(mark(gt_town).read_text())["reason"]
    assert _all_up(gt_town, tmux_server) == pids  # nothing killed
    control_agent(gt_town / "deacon", "crash")  # down: not restarted
    poll_until(lambda: "hq-deacon" not in tmux_server.sessions()
               or tmux_server.pane("hq-deacon") is None, timeout=30, what="deacon gone")
    no_restart_for_deacon = beats(gt_town)
    poll_until(lambda: beats(gt_town) >= no_restart_for_deacon + 5, timeout=30,
               what="passes")
    assert tmux_server.pane("hq-deacon") is None
    assert resume(gt_town).returncode == 0
    poll_until(lambda: (p := tmux_server.pane("hq-deacon")) and p[1] == "claude",
               timeout=60, what="deacon restarted after resume")
    out = services()
    lines = [line for line in out["deacon-keeper"].splitlines()
             if "took a shared lock on the new file again" in line]
    assert len(lines) == 1, lines  # told once


def test_lock_won_by_a_real_gt_daemon_stops_the_service_with_78(
        gt_town: Path, tmux_server: PrivateTmux) -> None:
    lock = gt_town / "daemon" / "daemon.lock"
    proc = start_service("deacon-keeper", gt_town, tmux_server, "--degraded", "true", *FAST)
    fd = -1
    try:
        poll_until(lambda: (p := tmux_server.pane("hq-deacon")) and p[1] == "claude",
                   timeout=60, what="deacon")
        pane = tmux_server.pane("hq-deacon")
        # a real `gt daemon run` won a new daemon.lock (after an [L] unlink): a new inode
        # at the path, held exclusively
        fresh = lock.with_name("daemon.lock.new")
        fd = os.open(fresh, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(fresh, lock)
        assert proc.wait(timeout=30) == 78
        out = proc.stdout.read() if proc.stdout else ""
        assert "was replaced, and a `gt daemon` now holds the new file exclusively" in out
        assert "Traceback" not in out
        assert tmux_server.pane("hq-deacon") == pane  # the agent untouched
    finally:
        keeper.stop(proc)
        if fd >= 0:
            os.close(fd)


@pytest.mark.parametrize(("gt_town", "dialect"), [("J", "J"), ("J", "L"), ("L", "L")],
                         indirect=["gt_town"])
def test_gt_daemon_status_beside_the_keeper_gastown_2026_6_11(
        gt_town: Path, tmux_server: PrivateTmux, dialect: str) -> None:
    """A [J] town read by either ``gt`` (one upgraded in place), and an [L] town."""
    proc = start_service("deacon-keeper", gt_town, tmux_server, "--degraded", "true", *FAST)
    try:
        poll_until(lambda: (gt_town / "daemon" / "state.json").exists() and beats(gt_town) > 1,
                   timeout=60, what="daemon/state.json")
        state_path = gt_town / "daemon" / "state.json"
        assert state_path.stat().st_mode & 0o777 == 0o644
        state = json.loads(state_path.read_text())
        assert state["running"] is True and state["pid"] == proc.pid
        (gt_town / ".standin" / "gt.dialect").write_text(dialect)
        lines = gt(gt_town, tmux_server, "daemon", "status").stdout.splitlines()
        if dialect == "L":  # the held lock is the truth, PID unknown; state.json lines
            assert lines[:2] == ["● Daemon is running (PID 0)", f"  Town: {gt_town}"]
            assert lines[2] == f"  Started: {state['started_at']}"
            assert lines[3].startswith("  Last heartbeat: ")
        else:
            assert lines[0] == "○ Daemon is not running"
        assert not (gt_town / "daemon" / "daemon.pid").exists()
    finally:
        code, out = keeper.stop(proc)
    assert code == 0, out
    assert json.loads(state_path.read_text())["running"] is False
    wait_gone(proc.pid)
