"""Each service wakes for its own agents' sessions only (issue 12, item 2): the hooks
name the closed session in a marker beside the event file, against real tmux.

A town of 10 rigs runs 21 long-running services; before this, every closed session woke
all of them, and they competed for the CPU with the one that owned the dead agent.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gastown_units.runtime.wake import session_token
from tests.harness import keeper
from tests.harness.poll import poll_until
from tests.harness.tmux_server import PrivateTmux
from tests.tmux.test_rig_services import RIG
from tests.tmux.test_wake_on_change import Output

WITNESS = f"gt-{RIG}-witness"


def set_hooks(server: PrivateTmux, events: Path) -> None:
    """What gastown-tmux.service's ExecStartPost runs."""
    events.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "gastown_units", "tmux-ready", "--event-file", str(events)],
        capture_output=True, text=True, timeout=30,
        env=keeper.service_env({"GT_TMUX_SOCKET": server.socket}))
    assert done.returncode == 0, done.stderr


def marker(events: Path, session: str) -> Path:
    return events.with_name(f"{events.name}.closed.{session_token(session)}")


def test_the_hooks_name_the_closed_session_and_run_nothing_of_it(
        tmux_server: PrivateTmux, tmp_path: Path) -> None:
    """A session's name reaches the shell only as letters, digits, '_' and '-' (tmux
    replaces the rest), whatever the name and the event file's path hold."""
    events = tmp_path / "run dir #{x} 'q'" / "events"
    set_hooks(tmux_server, events)
    pwned = tmp_path / "pwned"
    names = ["gt-gastown-nux", f"x;touch {pwned}", f"$(touch {pwned})", f"`touch {pwned}`",
             "a#b{c}", "a'b\"c"]
    for name in names:  # by its ID: tmux reads "$..." and "=..." targets its own way
        made = tmux_server.tmux("new-session", "-d", "-P", "-F", "#{session_id}", "-s", name,
                                "sleep 300")
        tmux_server.tmux("kill-session", "-t", made.stdout.strip())
        poll_until(lambda n=name: marker(events, n).exists(), timeout=10,  # type: ignore[misc]
                   what=f"the marker of {name!r}")
    # pane-died, run by tmux itself (set-hook -R) in the context of a live session: tmux
    # 3.3a reaps a remain-on-exit pane's dead child only at some later SIGCHLD, so a real
    # death fires pane-died after 0.05 s or after 40 s (measured); the expansion is the point
    tmux_server.tmux("new-session", "-d", "-s", "gt-gastown-furiosa", "sleep 300")
    tmux_server.tmux("set-hook", "-R", "-t", "=gt-gastown-furiosa:", "pane-died")
    poll_until(lambda: marker(events, "gt-gastown-furiosa").exists(), timeout=10,
               what="the pane-died marker")
    assert events.with_name("events.pending").exists()
    assert not pwned.exists(), "a session name ran in the hook's shell"
    found = sorted(p.name for p in events.parent.iterdir())
    assert found == sorted({"events", "events.pending",
                            *(marker(events, n).name for n in [*names, "gt-gastown-furiosa"])})
    assert marker(events, "a#b{c}").name == "events.closed.a_b_c_"


def test_a_rig_service_sleeps_through_other_sessions_deaths(
        town: Path, tmux_server: PrivateTmux, tmp_path: Path) -> None:
    """The witness (interval 1 h) is not woken by a polecat's or a stranger's closed
    session, and is woken at once by its own agent's."""
    events = tmp_path / "run" / "events"
    set_hooks(tmux_server, events)
    proc = keeper.start("witness", town, tmux_server.socket, "--rig", RIG, "--interval", "1h",
                        "--debug", env={"GT_EVENT_FILE": str(events)})
    out = Output(proc)
    try:
        poll_until(lambda: out.has("pass over:"), timeout=30, what="the first pass over")
        first = poll_until(lambda: tmux_server.pane(WITNESS), timeout=30, what="the Witness")[0]
        passes = out.count("pass over:")
        for name in (f"gt-{RIG}-nux", "scratch"):
            tmux_server.tmux("new-session", "-d", "-s", name, "sleep 300")
            tmux_server.tmux("kill-session", "-t", f"={name}")
            poll_until(lambda n=name: out.has(  # type: ignore[misc]
                f"tmux event for {n}: not our agent's session"), timeout=30,
                what=f"the witness told of {name}'s end")
        assert out.count("pass over:") == passes, "woken by another agent's session"
        tmux_server.tmux("kill-session", "-t", f"={WITNESS}")
        poll_until(lambda: (p := tmux_server.pane(WITNESS)) and p[0] != first, timeout=30,
                   what="the Witness back after its own session closed")
        poll_until(lambda: out.count("pass over:") > passes, timeout=30,
                   what="the pass that restarted it over")
    finally:
        code, _ = keeper.stop(proc)
    assert code == 0, "".join(out.lines)


def test_hooks_of_an_older_version_still_wake_every_service(
        town: Path, tmux_server: PrivateTmux, tmp_path: Path) -> None:
    """A tmux host that kept running across an upgrade still has hooks that only rewrite
    the event file: that names no session, so every service looks."""
    events = tmp_path / "run" / "events"
    events.parent.mkdir()
    events.touch()
    proc = keeper.start("witness", town, tmux_server.socket, "--rig", RIG, "--interval", "1h",
                        "--debug", env={"GT_EVENT_FILE": str(events)})
    out = Output(proc)
    try:
        poll_until(lambda: out.has("pass over:"), timeout=30, what="the first pass over")
        passes = out.count("pass over:")
        events.write_text("")  # what the old hooks did
        poll_until(lambda: out.count("pass over:") > passes, timeout=30,
                   what="a pass after the old hooks' event")
    finally:
        code, _ = keeper.stop(proc)
    assert code == 0, "".join(out.lines)
