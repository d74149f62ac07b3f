"""Stand-in ``gt daemon status|start|stop|run|clear-backoff``, ``gt down`` and ``gt up``.

Imported by the stand-in ``gt``.  Both dialects (``_common.gt_dialect``):

- [J] (gastown.md §1.7): ``daemon.IsRunning`` trusts ``daemon/daemon.pid`` alone, checked
  with ``ps``: the process must exist and its command line hold ``gt``, ``daemon`` and
  ``run``; anything else and the PID file is deleted as stale.  ``gt daemon run`` takes
  ``daemon/daemon.lock`` exclusively (c25ff34b5) and writes the decimal PID.
  ``gt daemon clear-backoff`` does not exist yet.
- [L] (gastown-2026.md §1.7, §6.11): the flock on ``daemon/daemon.lock`` is the truth; the
  PID file is ``PID\\n<16 hex>``; ``gt down`` also writes ``daemon/shutting-down``; a lock
  held without a PID file is *unlinked* by ``gt daemon stop``/``gt down``.

Stand-in knobs (``<town>/.standin/``): ``gt.down-grace`` (seconds between Ctrl-C and the
kill in ``gt down``, default 3), ``gt.agent`` (the agent command ``gt up`` starts, default
the stand-in agent), ``gt.daemon-wait`` (how long ``gt daemon start``/``gt up`` wait for
the new daemon, default 2 s).  Stdlib only.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from _common import atomic_write, go_time, gt_dialect, now_local, standin_dir, tmux_argv

STANDINS = Path(os.path.dirname(os.path.realpath(__file__)))
GT = STANDINS / "gt"
ZERO_TIME = "0001-01-01T00:00:00Z"
STOP_GRACE = 0.5  # [L] SIGTERM, 500 ms, SIGKILL
SHUTDOWN_LOCK_WAIT = 5.0  # [L] gt down waits 5 s for daemon/shutdown.lock
GRACE_DEFAULT = 3.0  # [L] Ctrl-C, 3 s, kill with processes
KILL_GRACE = 2.0  # KillSessionWithProcesses: SIGTERM, 2 s, SIGKILL


class Failed(Exception):
    """``Error: <msg>`` on stderr, exit 1."""


def _out(msg: str) -> None:
    sys.stdout.write(msg.rstrip("\n") + "\n")
    sys.stdout.flush()


def _err(msg: str) -> None:
    sys.stderr.write(msg.rstrip("\n") + "\n")
    sys.stderr.flush()


def _knob(town: Path, name: str, default: float) -> float:
    try:
        return float((standin_dir(town) / name).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return default


def daemon_dir(town: Path) -> Path:
    return town / "daemon"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie awaiting its reaper is not running
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> str:
    """``ps -p PID -o command=``."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _pid_file_first_line(town: Path) -> int | None:
    try:
        text = (daemon_dir(town) / "daemon.pid").read_text(encoding="utf-8")
    except OSError:
        return None
    first = text.split("\n", 1)[0].strip()
    return int(first) if first.isdigit() else None


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def is_running(town: Path) -> tuple[bool, int]:
    """``daemon.IsRunning`` of the town's dialect: (running, PID; 0 = unknown)."""
    pid_file = daemon_dir(town) / "daemon.pid"
    if gt_dialect(town) == "J":
        pid = _pid_file_first_line(town)
        if pid is None:
            if pid_file.exists():
                _unlink(pid_file)
            return False, 0
        words = _cmdline(pid)
        if not _alive(pid) or not all(w in words for w in ("gt", "daemon", "run")):
            _unlink(pid_file)  # stale (or not a gt daemon): deleted
            return False, 0
        return True, pid
    lock = daemon_dir(town) / "daemon.lock"
    if not lock.exists():
        return False, 0
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except OSError:  # TryLock error: fallback, PID file + signal 0
        pid = _pid_file_first_line(town) or 0
        return _alive(pid), pid
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True, _pid_file_first_line(town) or 0
    except OSError:
        pid = _pid_file_first_line(town) or 0
        return _alive(pid), pid
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        _unlink(pid_file)  # lock free: the PID file is stale
        return False, 0
    finally:
        os.close(fd)


def stop_daemon(town: Path) -> str:
    """Stop the daemon as ``gt daemon stop`` and ``gt down`` (phase 4) do; the report line.

    Raises Failed when there is none to stop."""
    running, pid = is_running(town)
    if not running:
        raise Failed("daemon is not running")
    pid_file = daemon_dir(town) / "daemon.pid"
    if pid <= 0:  # [L] lock held by X, no daemon.pid: unlink both, no signal
        _unlink(daemon_dir(town) / "daemon.lock")
        _unlink(pid_file)
        return "✓ Daemon stopped"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    time.sleep(STOP_GRACE)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _unlink(pid_file)
    return f"✓ Daemon stopped (was PID {pid})"


# ---------------------------------------------------------------------------
# gt daemon …
# ---------------------------------------------------------------------------


def _log(town: Path, line: str) -> None:
    """One Go ``log.LstdFlags`` line in ``daemon/daemon.log`` ([J] 0600, [L] 0644)."""
    mode = 0o600 if gt_dialect(town) == "J" else 0o644
    path = daemon_dir(town) / "daemon.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y/%m/%d %H:%M:%S")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, mode)
    try:
        os.write(fd, f"{stamp} {line}\n".encode())
    finally:
        os.close(fd)


def _write_state(town: Path, state: dict) -> None:
    atomic_write(daemon_dir(town) / "state.json", json.dumps(state, indent=2), mode=0o644)


def _read_state(town: Path) -> dict:
    try:
        data = json.loads((daemon_dir(town) / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def daemon_status(town: Path) -> int:
    running, pid = is_running(town)
    if not running:
        _out("○ Daemon is not running")
        _out("  Start with: gt daemon start")
        return 0
    _out(f"● Daemon is running (PID {pid})")
    _out(f"  Town: {town}")
    state = _read_state(town)
    if state.get("started_at"):
        _out(f"  Started: {state.get('started_at')}")
        if state.get("last_heartbeat"):
            _out(f"  Last heartbeat: {state.get('last_heartbeat')} "
                 f"(#{state.get('heartbeat_count', 0)})")
    return 0


def _startup_failure(town: Path, pid: int) -> str | None:
    """The ``Daemon startup failed (PID <pid>): <reason>`` reason in daemon.log, if any."""
    try:
        text = (daemon_dir(town) / "daemon.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    marker = f"Daemon startup failed (PID {pid}): "
    for line in reversed(text.splitlines()):
        if marker in line:
            return line.split(marker, 1)[1]
    return None


def spawn_daemon(town: Path) -> tuple[int, str | None]:
    """Start ``gt daemon run`` detached (cwd = town); (its PID, why it failed or None)."""
    proc = subprocess.Popen([sys.executable, str(GT), "daemon", "run"], cwd=town,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "GT_TOWN_ROOT": str(town)})
    deadline = time.monotonic() + _knob(town, "gt.daemon-wait", 2.0)
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            why = _startup_failure(town, proc.pid)
            return proc.pid, why or f"daemon exited with status {code}"
        if is_running(town)[0] and _pid_file_first_line(town) == proc.pid:
            return proc.pid, None
        time.sleep(0.05)
    why = _startup_failure(town, proc.pid)
    return proc.pid, why if why else (None if is_running(town)[0] else "daemon did not start")


def daemon_start(town: Path) -> int:
    running, pid = is_running(town)
    if running:
        raise Failed(f"daemon already running (PID {pid})")
    child, why = spawn_daemon(town)
    if why:
        raise Failed(f"daemon failed to start: {why}")
    _out(f"✓ Daemon started (PID {child})")
    return 0


def daemon_stop(town: Path) -> int:
    _out(stop_daemon(town))
    return 0


def daemon_run(town: Path) -> int:
    """The stand-in daemon: exclusive flock on daemon.lock, PID file, sleep until SIGTERM."""
    ddir = daemon_dir(town)
    ddir.mkdir(parents=True, exist_ok=True)
    fd = os.open(ddir / "daemon.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        _log(town, f"Daemon startup failed (PID {os.getpid()}): daemon already running "
                   "(lock held by another process)")
        os.close(fd)
        return 1
    stopping = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    pid_file = ddir / "daemon.pid"
    j = gt_dialect(town) == "J"
    text = str(os.getpid()) if j else f"{os.getpid()}\n{secrets.token_hex(8)}"
    atomic_write(pid_file, text, mode=0o644)
    started = go_time(now_local())
    _log(town, f"Daemon starting (PID {os.getpid()})")
    count = 0
    _write_state(town, {"running": True, "pid": os.getpid(), "started_at": started,
                        "last_heartbeat": started, "heartbeat_count": count})
    try:
        while not stopping:
            time.sleep(0.1)
    finally:
        if _pid_file_first_line(town) == os.getpid():
            _unlink(pid_file)
        state = _read_state(town)
        if state.get("pid") == os.getpid():
            _write_state(town, {**state, "running": False})
        _log(town, "Daemon stopped")
        os.close(fd)
    return 0


def daemon_clear_backoff(town: Path, argv: list[str]) -> int:
    if gt_dialect(town) == "J":
        raise Failed('unknown command "clear-backoff" for "gt daemon"')
    pos = [a for a in argv if not a.startswith("-")]
    if len(pos) != 1:
        raise Failed(f"accepts 1 arg(s), received {len(pos)}")
    agent = pos[0]
    path = daemon_dir(town) / "restart_state.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    agents = data.setdefault("agents", {}) if isinstance(data, dict) else {}
    entry = agents.get(agent) or {}
    agents[agent] = {"last_restart": entry.get("last_restart", ZERO_TIME), "restart_count": 0,
                     "backoff_until": ZERO_TIME, "crash_loop_since": ZERO_TIME}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # plain WriteFile
    try:
        os.write(fd, json.dumps({"agents": agents}, indent=2).encode())
    finally:
        os.close(fd)
    _out(f"✓ Cleared backoff for {agent}")
    running, pid = is_running(town)
    if running:
        try:
            if pid <= 0:
                raise ProcessLookupError("no such process")
            os.kill(pid, signal.SIGUSR2)
        except (ProcessLookupError, PermissionError) as exc:
            raise Failed(f"signalling daemon (PID {pid}): {exc}") from None
    return 0


def cmd_daemon(town: Path, argv: list[str]) -> int:
    sub = argv[0] if argv else ""
    try:
        if sub == "status":
            return daemon_status(town)
        if sub == "start":
            return daemon_start(town)
        if sub == "stop":
            return daemon_stop(town)
        if sub == "run":
            return daemon_run(town)
        if sub == "clear-backoff":
            return daemon_clear_backoff(town, argv[1:])
    except Failed as exc:
        _err(f"Error: {exc}")
        return 1
    _err(f'Error: unknown command "{sub}" for "gt daemon"')
    return 1


# ---------------------------------------------------------------------------
# Sessions of the town (names, cwd, env per dialect)
# ---------------------------------------------------------------------------


def _rigs(town: Path) -> dict[str, str]:
    """rig -> beads prefix as stored ('' when none), from mayor/rigs.json ([L] falls back
    to the town-level copy rigs.json)."""
    for path in (town / "mayor" / "rigs.json", town / "rigs.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        rigs = data.get("rigs") if isinstance(data, dict) else None
        if not isinstance(rigs, dict):
            continue
        out = {}
        for name, entry in rigs.items():
            beads = entry.get("beads") if isinstance(entry, dict) else None
            prefix = beads.get("prefix") if isinstance(beads, dict) else None
            out[str(name)] = prefix if isinstance(prefix, str) else ""
        return out
    return {}


def rig_session(town: Path, rig: str, prefix: str, rest: str) -> str:
    if gt_dialect(town) == "J":
        return f"gt-{rig}-{rest}"
    return f"{prefix or 'gt'}-{rest}"


def boot_session(town: Path) -> str:
    return "gt-boot" if gt_dialect(town) == "J" else "hq-boot"


def _subdirs(path: Path) -> list[str]:
    try:
        return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def down_groups(town: Path, polecats: bool) -> list[list[str]]:
    """The sessions ``gt down`` stops, group by group, in its order."""
    rigs = _rigs(town)
    groups: list[list[str]] = []
    if polecats:
        groups.append([rig_session(town, r, p, n) for r, p in rigs.items()
                       for n in _subdirs(town / r / "polecats")])
    if gt_dialect(town) == "L":
        groups.append([rig_session(town, r, p, f"crew-{n}") for r, p in rigs.items()
                       for n in _subdirs(town / r / "crew")])
    groups.append([rig_session(town, r, p, "refinery") for r, p in rigs.items()])
    groups.append([rig_session(town, r, p, "witness") for r, p in rigs.items()])
    groups.append(["hq-mayor", boot_session(town), "hq-deacon"])
    return groups


def _tmux(town: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(tmux_argv(town, *args), capture_output=True, text=True, timeout=10,
                          check=False)


def _has_session(town: Path, name: str) -> bool:
    return _tmux(town, "has-session", "-t", f"={name}").returncode == 0


def _pane_pids(town: Path, name: str) -> list[int]:
    result = _tmux(town, "list-panes", "-s", "-t", f"={name}", "-F", "#{pane_pid}")
    return [int(w) for w in result.stdout.split() if w.isdigit()] if result.returncode == 0 \
        else []


def kill_with_processes(town: Path, name: str) -> None:
    """``KillSessionWithProcesses`` (gastown.md §3.8, gastown-2026.md §3.8): SIGTERM the
    pane process, up to 2 s for it to exit, SIGKILL, then ``kill-session`` (the stand-in
    does not walk the pane's descendants)."""
    pids = _pane_pids(town, name)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    _tmux(town, "kill-session", "-t", f"={name}")


def _agent_command(town: Path) -> list[str]:
    try:
        text = (standin_dir(town) / "gt.agent").read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return shlex.split(text) if text else [sys.executable, str(STANDINS / "agent")]


def up_agents(town: Path) -> list[tuple[str, str, Path, dict[str, str], str]]:
    """What ``gt up`` starts: (label, session, cwd, env, prompt), deacon, mayor, witnesses,
    refineries, with the dialect's names, cwd and AgentEnv."""
    dialect = gt_dialect(town)
    stamp = _dt.datetime.now().strftime("%Y-%m-%dT%H:%M")
    base = {"GT_ROOT": str(town)}
    if dialect == "L":
        base.update({"GIT_CEILING_DIRECTORIES": str(town), "BD_BACKUP_ENABLED": "false"})
    out = [("Deacon", "hq-deacon", town / "deacon",
            {**base, "GT_ROLE": "deacon", "BD_ACTOR": "deacon", "GIT_AUTHOR_NAME": "deacon"},
            f"[GAS TOWN] deacon <- daemon • {stamp} • patrol\n\nI am Deacon. Start patrol."),
           ("Mayor", "hq-mayor", town / "mayor",
            {**base, "GT_ROLE": "mayor", "BD_ACTOR": "mayor", "GIT_AUTHOR_NAME": "mayor"},
            f"[GAS TOWN] mayor <- human • {stamp} • cold-start")]
    rigs = _rigs(town)
    for role in ("witness", "refinery"):
        for rig, prefix in rigs.items():
            actor = f"{rig}/{role}"
            env = {**base, "GT_ROLE": actor if dialect == "L" else role, "GT_RIG": rig,
                   "BD_ACTOR": actor, "GIT_AUTHOR_NAME": actor}
            if role == "witness":
                cwd = town / rig / "witness" / "rig"
                if not cwd.is_dir():
                    cwd = town / rig / "witness"
            else:
                cwd = town / rig / "refinery" / "rig"
                if not cwd.is_dir():
                    cwd = town / rig / "mayor" / "rig"
                env["GT_REFINERY"] = "1"
                if dialect == "J":
                    env["BEADS_NO_DAEMON"] = "1"
            out.append((f"{role.capitalize()} ({rig})", rig_session(town, rig, prefix, role),
                        cwd, env, f"[GAS TOWN] {actor} <- deacon • {stamp} • patrol"))
    return out


def start_session(town: Path, session: str, cwd: Path, env: dict[str, str],
                  prompt: str) -> str | None:
    """Create the agent session ([J]: command with ``exec env``; [L]: ``-e`` too and
    ``GT_SESSION``); None or why it failed."""
    if gt_dialect(town) == "L":
        env = {**env, "GT_SESSION": session, "GT_AGENT": "claude",
               "GT_PROCESS_NAMES": "node,claude"}
    cwd.mkdir(parents=True, exist_ok=True)
    words = ["exec", "env", *(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())),
             *(shlex.quote(w) for w in _agent_command(town)), shlex.quote(prompt)]
    extra: list[str] = []
    if gt_dialect(town) == "L":
        for k, v in sorted(env.items()):
            extra += ["-e", f"{k}={v}"]
    result = _tmux(town, "new-session", "-d", "-s", session, "-c", str(cwd), *extra,
                   " ".join(words))
    if result.returncode != 0:
        return result.stderr.strip() or f"tmux exited {result.returncode}"
    if gt_dialect(town) == "J":
        for k, v in sorted(env.items()):
            _tmux(town, "set-environment", "-t", session, k, v)
    return None


# ---------------------------------------------------------------------------
# gt down, gt up
# ---------------------------------------------------------------------------


def _take_shutdown_lock(town: Path) -> int:
    path = daemon_dir(town) / "shutdown.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + SHUTDOWN_LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise Failed("another shutdown is in progress (daemon/shutdown.lock is "
                             "held)") from None
            time.sleep(0.1)


def _kill_tracked_pids(town: Path) -> int:
    """[L] ``KillTrackedPIDs``: SIGTERM each ``.runtime/pids/*.pid`` whose start matches."""
    killed = 0
    folder = town / ".runtime" / "pids"
    for path in sorted(folder.glob("*.pid")) if folder.is_dir() else []:
        try:
            pid_text, _, start = path.read_text(encoding="utf-8").strip().partition("|")
            pid = int(pid_text)
        except (OSError, ValueError):
            _unlink(path)
            continue
        now = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True,
                             text=True, timeout=5, check=False,
                             env={**os.environ, "LC_ALL": "C"}).stdout.strip()
        if now and (not start or now == start.strip()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
                killed += 1
        _unlink(path)
    return killed


def cmd_down(town: Path, argv: list[str]) -> int:
    flags = set(argv)
    unknown = [a for a in argv if a not in ("--polecats", "--all", "--force", "--nuke",
                                           "-p", "-a", "-f")]
    if unknown:
        _err(f"Error: unknown flag: {unknown[0]}")
        return 1
    polecats = bool(flags & {"--polecats", "-p", "--all", "-a"})
    if "--nuke" in flags and os.environ.get("GT_NUKE_ACKNOWLEDGED") != "1":
        _err("Error: --nuke kills the whole tmux server; set GT_NUKE_ACKNOWLEDGED=1 to "
             "confirm")
        return 1
    dialect = gt_dialect(town)
    try:
        lock_fd = _take_shutdown_lock(town)
    except Failed as exc:
        _err(f"Error: {exc}")
        return 1
    marker = daemon_dir(town) / "shutting-down"
    try:
        if dialect == "L":
            atomic_write(marker, str(os.getpid()), mode=0o644)
            _tmux(town, "set-option", "-g", "exit-empty", "off")
        grace = _knob(town, "gt.down-grace", GRACE_DEFAULT)
        stopped = 0
        for group in down_groups(town, polecats):
            present = [s for s in group if _has_session(town, s)]
            if not present:
                continue
            for session in present:
                _tmux(town, "send-keys", "-t", f"={session}:", "C-c")
            time.sleep(max(0.0, grace))
            for session in present:
                kill_with_processes(town, session)
                _out(f"✓ {session} stopped")
                stopped += 1
        try:
            _out(stop_daemon(town))
        except Failed:
            _out("○ Daemon was not running")
        if dialect == "L" and flags & {"--all", "-a", "--force", "-f"}:
            _out(f"✓ {_kill_tracked_pids(town)} tracked process(es) signalled")
        if "--nuke" in flags:
            _tmux(town, "kill-server")
            _out("✓ tmux server killed")
        _out(f"✓ Gas Town is down ({stopped} session(s) stopped)")
        return 0
    finally:
        if dialect == "L":
            with contextlib.suppress(OSError):
                if marker.read_text(encoding="utf-8").strip() == str(os.getpid()):
                    marker.unlink()
        os.close(lock_fd)


def cmd_up(town: Path, argv: list[str]) -> int:
    dialect = gt_dialect(town)
    failed = False
    if dialect == "L":  # ensureDaemon refuses while gt down runs
        marker = daemon_dir(town) / "shutting-down"
        try:
            text = marker.read_text(encoding="utf-8").strip()
        except OSError:
            text = ""
        if text:
            if text.isdigit() and _alive(int(text)):
                _err(f"Error: shutdown in progress (gt down, PID {text}); try again when it "
                     "is done")
                return 1
            _unlink(marker)
    running, pid = is_running(town)
    if running:
        _out(f"✓ Daemon: running (PID {pid if pid > 0 else 'unknown'})")
    else:
        child, why = spawn_daemon(town)
        if why:
            _out(f"✗ Daemon: {why}")
            failed = True
        else:
            _out(f"✓ Daemon: started (PID {child})")
    for label, session, cwd, env, prompt in up_agents(town):
        if _has_session(town, session):
            _out(f"✓ {label}: already running ({session})")
            continue
        why = start_session(town, session, cwd, env, prompt)
        if why:
            _out(f"✗ {label}: {why}")
            failed = True
        else:
            _out(f"✓ {label}: started ({session})")
    if failed:
        _err("Error: not all services started")
        return 1
    _out("✓ All services running")
    return 0


COMMANDS = {"daemon": cmd_daemon, "down": cmd_down, "up": cmd_up}
