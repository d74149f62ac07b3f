"""One actor per agent, no stale action (design rule 9): the races between services.

Each test is a scenario of issue 7 that lost work on the previous main: a shutdown undone by
a crash sweep, a keeper starting an agent in the middle of a cycle, a stale request killing a
reused polecat name, a transient ``bd`` failure deleting a request unexecuted, a dead pane or
a tombstoned bead misjudged.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from tests.harness import keeper
from tests.harness.gitrig import add_polecat, git, make_rig_repos
from tests.harness.poll import poll_until, wait_gone
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import AGENT, STANDINS, agent_record, rig_db
from tests.tmux.test_lifecycle_mail import CYCLE, inbox_ids, seed, start_witness, starts
from tests.tmux.test_polecat_health import RIG, bd, crash, mails, polecat, sweep

NUX = f"gt-{RIG}-nux"
NO_BACKOFF = ("--restart-backoff", "0")


def standin(town: Path, tool: str, *args: str) -> str:
    return subprocess.run([str(STANDINS / tool), *args], cwd=town, capture_output=True,
                          text=True, timeout=30, check=True).stdout


def request_shutdown(town: Path, name: str, *, age: float = 0) -> str:
    return standin(town, "gt", "standin", "seed-mail", "--to", f"{RIG}/witness",
                   "--from", "mayor/", "-s", f"LIFECYCLE:Shutdown {name}",
                   "-m", f"Reason: work_reassigned\nRequestedBy: mayor\nPolecat: {name}",
                   "--age-seconds", str(age)).strip()


def witness_inbox(town: Path) -> list[str]:
    out = standin(town, "gt", "mail", "inbox", "--identity", f"{RIG}/witness", "--json")
    return [m["id"] for m in json.loads(out) or [] if "Shutdown" in m["subject"]]


def hold_lock(town: Path, session: str) -> int:
    """Take an agent's lock as another service would; returns the fd (close to release)."""
    path = town / "daemon" / "agents" / f"{session}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, b"4242 test-holder restart\n")
    return fd


def during_cycle(town: Path, server: PrivateTmux, session: str,
                 other: Callable[[], subprocess.CompletedProcess[str]]
                 ) -> subprocess.CompletedProcess[str]:
    """Run lifecycle-mail's pass; once it has killed ``session``, run ``other`` (another
    service's pass) in the window before the new start. Returns ``other``'s result."""
    cycling = subprocess.Popen(
        keeper.service_argv("lifecycle-mail", town, server.socket, "--once"),
        text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=keeper.service_env())
    try:
        poll_until(lambda: session not in server.sessions(), timeout=30,
                   what="the cycle's kill")
        meanwhile = other()
        out, _ = cycling.communicate(timeout=120)
    finally:
        if cycling.poll() is None:
            cycling.kill()
            cycling.communicate()
    assert cycling.returncode == 0, out
    assert meanwhile.returncode == 0, meanwhile.stderr
    return meanwhile


# --- the witness's shutdown against the crash sweep ---------------------------------------
def test_witness_shutdown_is_not_undone_by_a_concurrent_sweep(town: Path,
                                                              tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")
    pid = agent_record(tree)["pid"]
    request_shutdown(town, "nux")
    stop = threading.Event()
    sweeps: list[subprocess.CompletedProcess[str]] = []

    def sweeping() -> None:  # polecat-health woken again and again, as by the tmux hook
        while not stop.is_set():
            sweeps.append(sweep(town, tmux_server, *NO_BACKOFF))

    sweeper = threading.Thread(target=sweeping)
    sweeper.start()
    try:
        result = keeper.run_once("witness", town, tmux_server.socket, "--rig", RIG)
    finally:
        stop.set()
        sweeper.join(timeout=120)
    assert result.returncode == 0, result.stderr
    wait_gone(pid)
    after = sweep(town, tmux_server, *NO_BACKOFF)  # the sweep the session-closed hook starts
    assert after.returncode == 0, after.stderr
    assert NUX not in tmux_server.sessions()
    assert not tree.exists(), "worktree kept"
    assert witness_inbox(town) == [], "request not acknowledged"
    every = [*sweeps, after]
    assert not any("CRASH DETECTED" in s.stderr for s in every)
    assert not any(s.startswith("CRASHED_POLECAT") for s in mails(town, f"{RIG}/witness"))
    state = town / "daemon" / "restart_state.json"
    assert not state.exists() or NUX not in json.loads(state.read_text())["agents"]
    marker = json.loads((town / "daemon" / "shutdowns" / f"{NUX}.json").read_text())
    assert marker["by"] == f"{RIG}/witness" and marker["hook_bead"]


def test_shut_down_polecat_comes_back_only_with_new_work(town: Path,
                                                         tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")
    request_shutdown(town, "nux")
    result = keeper.run_once("witness", town, tmux_server.socket, "--rig", RIG)
    assert result.returncode == 0, result.stderr
    assert NUX not in tmux_server.sessions()
    assert not tree.exists()
    # The pool hands the name out again: a new worktree first, then new work is hooked.
    tree = add_polecat(town / RIG, RIG, "nux")
    held = sweep(town, tmux_server, *NO_BACKOFF)
    assert held.returncode == 0 and NUX not in tmux_server.sessions(), held.stderr
    issue = json.loads(bd(town, "create", "--title=new work", "--type=task", "--json",
                          rig=RIG))["id"]
    bd(town, "slot", "clear", f"gt-{RIG}-polecat-nux", "hook")
    bd(town, "slot", "set", f"gt-{RIG}-polecat-nux", "hook", issue)
    again = sweep(town, tmux_server, *NO_BACKOFF)
    assert again.returncode == 0, again.stderr
    assert "shutdown marker is removed" in again.stderr
    poll_until(lambda: tmux_server.pane(NUX), timeout=30, what="polecat with new work")


def test_sweep_leaves_a_locked_polecat_alone_and_books_nothing(town: Path,
                                                               tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")
    fd = hold_lock(town, NUX)
    try:
        crash(tmux_server, tree, "nux")
        busy = sweep(town, tmux_server, "--debug")
        assert busy.returncode == 0, busy.stderr
        assert "being acted on by another service" in busy.stderr
        assert NUX not in tmux_server.sessions()
        state = town / "daemon" / "restart_state.json"
        assert not state.exists() or NUX not in json.loads(state.read_text())["agents"]
    finally:
        os.close(fd)  # the other service is done (or died: the kernel frees its flock)
    free = sweep(town, tmux_server)
    assert free.returncode == 0, free.stderr
    poll_until(lambda: tmux_server.pane(NUX), timeout=30, what="polecat restarted")


# --- deacon/ shutdown against the Deacon's keeper ------------------------------------------
def test_deacon_shutdown_is_not_undone_by_its_keeper(town: Path,
                                                     tmux_server: PrivateTmux) -> None:
    degraded = ("--degraded", "true")
    first = keeper.run_once("deacon-keeper", town, tmux_server.socket, *degraded)
    assert first.returncode == 0, first.stderr
    pid = poll_until(lambda: (p := tmux_server.pane("hq-deacon")) and p[0], timeout=20,
                     what="deacon")
    seed(town, "deacon/", '{"action":"shutdown"}')
    done = keeper.run_once("lifecycle-mail", town, tmux_server.socket)
    assert done.returncode == 0, done.stderr
    wait_gone(pid)
    kept = keeper.run_once("deacon-keeper", town, tmux_server.socket, *degraded)
    assert kept.returncode == 0, kept.stderr
    assert "hq-deacon" not in tmux_server.sessions()
    assert "not restarting it" in kept.stderr
    released = subprocess.run(
        [sys.executable, "-m", "gastown_units", "clear-backoff", "deacon/", "--town", str(town)],
        capture_output=True, text=True, timeout=30, env=keeper.service_env())
    assert released.returncode == 0 and "shutdown marker" in released.stdout, released.stderr
    back = keeper.run_once("deacon-keeper", town, tmux_server.socket, *degraded)
    assert back.returncode == 0, back.stderr
    assert "hq-deacon" in tmux_server.sessions()


# --- lifecycle cycle against the refinery's keeper -----------------------------------------
def test_keeper_does_not_start_an_agent_in_the_middle_of_a_cycle(
        town: Path, tmux_server: PrivateTmux) -> None:
    make_rig_repos(town / RIG)
    checkout = town / RIG / "refinery" / "rig"
    checkout.rmdir()
    git(town / RIG, "clone", "-q", str(town / RIG / ".repo.git"), str(checkout))
    (checkout / ".git" / "info" / "exclude").write_text(".agent/\n")
    # A slow remote: the cycle's pre-sync takes seconds, a window for the keeper.
    git(checkout, "config", "remote.origin.uploadpack", "sleep 4; git-upload-pack")
    up = keeper.run_once("refinery", town, tmux_server.socket, "--rig", RIG,
                         "--git-timeout", "2")
    assert up.returncode == 0, up.stderr
    old = tmux_server.pane(f"gt-{RIG}-refinery")[0]
    assert starts(checkout) == 1
    seed(town, f"{RIG}/refinery", CYCLE)
    meanwhile = during_cycle(town, tmux_server, f"gt-{RIG}-refinery", lambda: keeper.run_once(
        "refinery", town, tmux_server.socket, "--rig", RIG, "--debug"))
    assert "is being acted on by" in meanwhile.stderr
    new = tmux_server.pane(f"gt-{RIG}-refinery")[0]
    assert new != old
    poll_until(lambda: starts(checkout) == 2, timeout=20, what="exactly one more start")
    assert (checkout / ".git" / "FETCH_HEAD").exists(), "the cycle's pre-sync did not run"
    assert inbox_ids(town) == set()


def test_cycle_of_a_polecat_is_not_raced_by_the_crash_sweep(town: Path,
                                                           tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")
    old = agent_record(tree)["pid"]
    git(town / RIG / ".repo.git", "config", "remote.origin.uploadpack",
        "sleep 4; git-upload-pack")  # a slow pre-sync: the window the sweep used to hit
    seed(town, f"{RIG}/nux", CYCLE)
    meanwhile = during_cycle(town, tmux_server, NUX,  # as if woken by the session closing
                             lambda: sweep(town, tmux_server, "--debug"))
    assert "being acted on by another service" in meanwhile.stderr
    assert "CRASH DETECTED" not in meanwhile.stderr
    poll_until(lambda: (r := agent_record(tree)) and r["pid"] != old, timeout=30,
               what="the cycled polecat")
    assert starts(tree) == 2
    state = town / "daemon" / "restart_state.json"
    assert not state.exists() or NUX not in json.loads(state.read_text())["agents"], \
        "a requested cycle was booked as a crash"


def test_one_rigs_bad_agent_setting_does_not_stop_the_sweep(town: Path,
                                                            tmux_server: PrivateTmux) -> None:
    from tests.harness.town import make_town

    make_town(town, rigs={RIG: "gt", "other": "ot"})
    tree = polecat(town, tmux_server, "nux")
    crash(tmux_server, tree, "nux")
    (town / "other" / "settings").mkdir(parents=True, exist_ok=True)
    (town / "other" / "settings" / "config.json").write_text(
        json.dumps({"role_agents": {"polecat": "nosuch"}}))
    (town / RIG / "settings").mkdir(parents=True, exist_ok=True)
    (town / RIG / "settings" / "config.json").write_text(json.dumps({
        "agents": {"standin": {"command": sys.executable, "args": [str(AGENT)]}},
        "role_agents": {"polecat": "standin"}}))
    argv = keeper.service_argv("polecat-health", town, tmux_server.socket, "--once")
    at = argv.index("--agent-command")
    del argv[at:at + 2]  # the rigs' own settings decide
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                            env=keeper.service_env())
    assert result.returncode == 1, result.stderr  # a failure was recorded
    assert "rig other not swept: unknown agent 'nosuch'" in result.stderr
    assert "Traceback" not in result.stderr
    poll_until(lambda: tmux_server.pane(NUX), timeout=30, what="the other rig's restart")


# --- stale requests ------------------------------------------------------------------------
def test_stale_shutdown_for_a_reused_polecat_name_kills_nothing(
        town: Path, tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")  # brand new; the request is two hours older
    pid = agent_record(tree)["pid"]
    request_shutdown(town, "nux", age=2 * 3600)
    result = keeper.run_once("witness", town, tmux_server.socket, "--rig", RIG)
    assert result.returncode == 0, result.stderr
    assert "without acting" in result.stderr
    assert tmux_server.pane(NUX)[0] == pid
    assert tree.exists()
    assert witness_inbox(town) == []


def test_expired_shutdown_is_dropped(town: Path, tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")
    request_shutdown(town, "nux", age=3 * 86400)
    result = keeper.run_once("witness", town, tmux_server.socket, "--rig", RIG)
    assert result.returncode == 0 and "expired" in result.stderr, result.stderr
    assert tmux_server.pane(NUX) and tree.exists() and witness_inbox(town) == []


def test_transient_bd_failure_keeps_a_cycle_request(town: Path,
                                                    tmux_server: PrivateTmux) -> None:
    old = start_witness(town, tmux_server)
    message = seed(town, f"{RIG}/witness", CYCLE)
    knob = town / ".standin" / "bd.fail.show"
    knob.write_text("database is locked")
    failed = keeper.run_once("lifecycle-mail", town, tmux_server.socket)
    assert "Traceback" not in failed.stderr
    assert inbox_ids(town) == {message}, "request deleted on a bd failure"
    assert tmux_server.pane(f"gt-{RIG}-witness")[0] == old
    knob.unlink()
    done = keeper.run_once("lifecycle-mail", town, tmux_server.socket)
    assert done.returncode == 0, done.stderr
    assert inbox_ids(town) == set()
    assert tmux_server.pane(f"gt-{RIG}-witness")[0] != old


# --- what counts as dead -------------------------------------------------------------------
def test_dead_pane_with_hooked_work_is_restarted(town: Path, tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")
    first = agent_record(tree)["pid"]
    tmux_server.tmux("set-option", "-t", f"={NUX}:", "remain-on-exit", "on")
    (tree / ".agent").mkdir(exist_ok=True)
    (tree / ".agent" / "control").write_text("crash\n")
    poll_until(lambda: tmux_server.tmux("list-panes", "-t", f"={NUX}", "-F",
                                        "#{pane_dead}").stdout.strip() == "1",
               timeout=20, what="a dead pane kept by remain-on-exit")
    result = sweep(town, tmux_server)
    assert result.returncode == 0, result.stderr
    assert "is a zombie" in result.stderr
    poll_until(lambda: (r := agent_record(tree)) and r["pid"] != first, timeout=30,
               what="restarted agent")
    assert tmux_server.tmux("list-panes", "-t", f"={NUX}", "-F",
                            "#{pane_dead}").stdout.strip() == "0"


def test_polecat_behind_a_shell_is_running_for_status_too(town: Path,
                                                          tmux_server: PrivateTmux) -> None:
    workdir = town / RIG / "witness"
    tmux_server.tmux("new-session", "-d", "-s", f"gt-{RIG}-witness", "-c", str(workdir),
                     f"bash --norc --noprofile -c '{sys.executable} {AGENT}; exec bash'")
    poll_until(lambda: agent_record(workdir), timeout=20, what="agent behind a shell")
    out = subprocess.run([sys.executable, "-m", "gastown_units", "status", "--town", str(town)],
                         capture_output=True, text=True, timeout=30,
                         env=keeper.service_env({"GT_TMUX_SOCKET": tmux_server.socket,
                                                 "GT_AGENT_COMMAND": f"{sys.executable} {AGENT}"}))
    assert out.returncode == 1, out.stderr  # the Deacon and the Refinery do not run
    assert "deacon/ is missing" in out.stdout and f"{RIG}/witness" not in \
        out.stdout.splitlines()[-1]
    row = next(line for line in out.stdout.splitlines() if line.startswith(f"{RIG}/witness"))
    assert " running " in row, row


def _set_status(town: Path, issue: str, status: str | None) -> None:
    store = rig_db(town, RIG)
    rows = [json.loads(line) for line in store.read_text().splitlines()]
    if status is None:
        rows = [r for r in rows if r["id"] != issue]
    else:
        for row in rows:
            if row["id"] == issue:
                row["status"] = status
    store.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_tombstoned_or_missing_hooked_bead_is_reported_not_restarted(
        town: Path, tmux_server: PrivateTmux) -> None:
    trees = {n: polecat(town, tmux_server, n) for n in ("tomb", "gone")}
    for name, status in (("tomb", "tombstone"), ("gone", None)):
        hooked = json.loads(bd(town, "show", f"gt-{RIG}-polecat-{name}", "--json"))[0]
        _set_status(town, hooked["hook_bead"], status)
        crash(tmux_server, trees[name], name)
    for _ in range(2):
        result = sweep(town, tmux_server)
        assert result.returncode == 0, result.stderr
    assert tmux_server.sessions() == set()
    reports = [s for s in mails(town, f"{RIG}/witness") if s.startswith("STALE_HOOK")]
    assert len(reports) == 2, reports
    assert any("which is a tombstone" in s for s in reports)
    assert any("which does not exist" in s for s in reports)
