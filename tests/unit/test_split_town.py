"""The split-town guard's pure parts, and its rules of evidence against real processes.

The socket directories hold real (bound) Unix sockets; the foreign "tmux" that hangs or
answers is a real executable. The guard against real tmux servers is in the tmux ring
(``tests/tmux/test_split_town.py``).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

import pytest

from gastown_units.services.polecat_plan import Act, SweepState, plan_sweep
from gastown_units.services.split_town import (
    UNKNOWN_HOLD,
    Sighting,
    SplitTownGuard,
    foreign_servers,
    in_town,
    parse_sessions,
    socket_dir,
)
from tests.unit.test_polecat_plan import LIMITS, facts, tracker


def bind(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()
    return path


def test_socket_dir_follows_tmux_tmpdir() -> None:
    assert socket_dir({"TMUX_TMPDIR": "/run/t"}, 7) == Path("/run/t/tmux-7")
    assert socket_dir({"TMUX_TMPDIR": ""}, 7) == Path("/tmp/tmux-7")


def test_foreign_servers_are_every_socket_but_ours_and_default_if_there(tmp_path: Path) -> None:
    d = tmp_path / "tmux-0"
    for name in ("ours", "gt", "default"):
        bind(d / name)
    (d / "not-a-socket").write_text("x")
    assert foreign_servers(d, "ours") == [d / "default", d / "gt"]
    assert foreign_servers(d, None) == [d / "gt", d / "ours"]  # we are the default
    (d / "default").unlink()
    assert foreign_servers(d, "ours") == [d / "gt"]  # no file: no server can listen there
    assert foreign_servers(tmp_path / "absent", "ours") == []
    (d / "default").write_text("")  # not a socket, but there: tmux is asked what it is
    assert d / "default" in foreign_servers(d, "ours")


def test_sessions_and_their_town() -> None:
    assert parse_sessions("hq-deacon\t/gt/deacon\ngt-r-witness\t\n\n") == {
        "hq-deacon": "/gt/deacon", "gt-r-witness": ""}
    assert in_town("/gt", Path("/gt")) and not in_town("/gt2/deacon", Path("/gt"))


def test_a_town_reached_through_a_symlink_is_the_same_town(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "deacon").mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    assert in_town(str(tmp_path / "link" / "deacon"), real)
    assert in_town(str(real / "deacon"), tmp_path / "link")


def test_the_line_names_the_server_and_the_fix() -> None:
    seen = Sighting("gt-r-witness", Path("/tmp/tmux-1/gt"), "the default server x")
    assert seen.line().startswith("split town: gt-r-witness already runs on tmux server "
                                  "/tmp/tmux-1/gt, not on the default server x;")
    assert seen.line().endswith("(GT_TMUX_SOCKET=gt)")
    unknown = Sighting("hq-deacon", Path("/tmp/tmux-1/gt"), "ours", unknown="no answer")
    assert unknown.line().startswith("split town?: tmux server /tmp/tmux-1/gt does not answer")


FAKE_TMUX = """#!{python}
import sys, time
server = sys.argv[sys.argv.index("-S") + 1]
if server.endswith("/hung"):
    time.sleep(30)
elif server.endswith("/gt"):
    print("hq-deacon\\t{town}/deacon")
    print("gt-r-witness\\t/elsewhere/r/witness")
else:
    sys.exit("no server running on " + server)
"""


@pytest.fixture
def guard_parts(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(socket dir, fake tmux, town root)."""
    town = tmp_path / "town"
    fake = tmp_path / "tmux"
    fake.write_text(FAKE_TMUX.format(python=sys.executable, town=town))
    fake.chmod(0o755)
    return tmp_path / "sockets", fake, town


def make_guard(parts: tuple[Path, Path, Path], now: list[float]) -> SplitTownGuard:
    sockets, fake, town = parts
    return SplitTownGuard(binary=str(fake), socket="ours", town_root=town,
                          state_file=town / "daemon/units/split-town.json", timeout=0.5,
                          environ={"TMUX_TMPDIR": str(sockets)}, clock=lambda: now[0])


def test_guard_finds_the_town_s_session_only(guard_parts: tuple[Path, Path, Path]) -> None:
    sockets = guard_parts[0] / f"tmux-{os.getuid()}"
    for name in ("ours", "gt", "stale"):
        bind(sockets / name)
    guard = make_guard(guard_parts, [0.0])
    found = guard.check_many(["hq-deacon", "gt-r-witness", "gt-r-nux"])
    assert list(found) == ["hq-deacon"]  # the witness of that name is another town's
    assert found["hq-deacon"].server == sockets / "gt"
    assert "the configured socket 'ours' (GT_TMUX_SOCKET)" in found["hq-deacon"].line()
    assert guard.check_many([]) == {}


def test_an_unanswering_server_holds_starts_for_a_bounded_time(
        guard_parts: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    sockets = guard_parts[0] / f"tmux-{os.getuid()}"
    bind(sockets / "hung")
    now = [1000.0]
    held = make_guard(guard_parts, now).check("hq-deacon")
    assert held is not None and held.unknown and held.server == sockets / "hung"
    now[0] += UNKNOWN_HOLD - 1  # a new process (polecat-health is a oneshot) remembers
    assert make_guard(guard_parts, now).check("hq-deacon") is not None
    now[0] += 2
    later = make_guard(guard_parts, now)
    with caplog.at_level(logging.WARNING):
        assert later.check("hq-deacon") is None
        assert later.check("hq-deacon") is None
    assert sum("has not answered" in r.message for r in caplog.records) == 1
    (sockets / "hung").unlink()  # the server went away: its clock is forgotten
    assert later.check("hq-deacon") is None
    bind(sockets / "hung")  # a new server that hangs again is held again
    assert make_guard(guard_parts, now).check("hq-deacon") is not None


def test_a_polecat_elsewhere_is_no_death_and_is_said_once() -> None:
    line = "split town: gt-gastown-nux already runs on tmux server /x/gt, ..."
    state, track = SweepState(), tracker()
    for logged in (True, False):
        plan = plan_sweep([facts(elsewhere=line)], state, track, LIMITS, 1000.0)
        step = plan.polecats[0]
        assert step.act is Act.ELSEWHERE and not step.mails and not plan.mass_death
        assert bool(step.logs) is logged
        state, track = plan.state, plan.tracker
    assert not state.dead
    plan = plan_sweep([facts()], state, track, LIMITS, 1001.0)
    assert plan.polecats[0].act is Act.RESTART  # back on missing evidence of a copy
    assert any("split town over" in text for _, text in plan.polecats[0].logs)
