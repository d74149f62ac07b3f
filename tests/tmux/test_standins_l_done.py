"""The [L] stand-in ``gt done`` against real tmux: a clean COMPLETED exit kills its own
session (gastown-2026.md §5.6, 68320ca2), any other exit keeps it.

The server is private: an [L] town's socket is ``l_socket_name(town)`` (§3.0), unique for a
fresh tmp town path. It is started with ``-f /dev/null`` and killed at teardown; the
default tmux server is never touched.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.poll import poll_until
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import STANDINS, bd, make_l_town

sys.path.insert(0, str(STANDINS))
from _common import l_socket_name  # noqa: E402

RIG = "gastown"
SESSION = "gt-nux"  # [L] polecat session <prefix>-<name> (§3.1)


@pytest.fixture
def ltown(tmp_path: Path) -> Path:
    town = make_l_town(tmp_path / "ltown", rigs={RIG: "gt"})
    (town / ".standin" / "gt.sling-seconds").write_text("0")
    return town


@pytest.fixture
def server(ltown: Path) -> Iterator[PrivateTmux]:
    tmux = PrivateTmux(socket=l_socket_name(str(ltown)))
    try:
        yield tmux
    finally:
        tmux.stop()  # kill-server of our own socket only


def sling(town: Path) -> str:
    work = json.loads(bd(town, "create", "--title=w", "--json", rig=RIG))["id"]
    out = subprocess_gt(town, "sling", work, RIG)
    assert out.returncode == 0, out.stderr
    return work


def subprocess_gt(town: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(STANDINS / "gt"), *args], cwd=town,
                          capture_output=True, text=True, timeout=30, check=False)


def start_polecat(server: PrivateTmux, town: Path, marker: Path, *done_args: str) -> None:
    """The polecat's pane runs ``gt done`` with the §3.3 environment, then records its exit
    status and lingers (as an agent pane would)."""
    env = {"GT_RIG": RIG, "GT_POLECAT": "nux", "GT_ROLE": f"{RIG}/polecats/nux",
           "BD_ACTOR": f"{RIG}/polecats/nux", "GT_SESSION": SESSION,
           "GT_TOWN_ROOT": str(town)}
    gt_cmd = " ".join(shlex.quote(a) for a in (sys.executable, str(STANDINS / "gt"), "done",
                                               *done_args))
    script = (f"cd {shlex.quote(str(town))} && {gt_cmd}; echo $? > {shlex.quote(str(marker))};"
              " sleep 60")
    server.tmux("-f", "/dev/null", "new-session", "-d", "-s", SESSION, "-x", "80", "-y", "24",
                *(a for k, v in sorted(env.items()) for a in ("-e", f"{k}={v}")),
                "sh", "-c", script)
    server.started = True


def agent_description(town: Path) -> list[str]:
    rows = [json.loads(x) for x in (town / ".beads" / "issues.jsonl").read_text().splitlines()]
    (agent,) = [r for r in rows if r["id"] == "gt-gastown-polecat-nux"]
    return agent["description"].splitlines()


def work_status(town: Path, work: str) -> str:
    db = town / RIG / "mayor" / "rig" / ".beads" / "issues.jsonl"
    rows = [json.loads(x) for x in db.read_text().splitlines()]
    return next(r["status"] for r in rows if r["id"] == work)


def test_l_clean_done_kills_its_own_session_gastown_2026_5_6(ltown: Path, tmp_path: Path,
                                                             server: PrivateTmux) -> None:
    work = sling(ltown)
    start_polecat(server, ltown, tmp_path / "rc")
    poll_until(lambda: SESSION not in server.sessions(), timeout=20,
               what="gt done killed its own session")
    assert work_status(ltown, work) == "closed"
    assert "agent_state: done" in agent_description(ltown)
    hb = json.loads((ltown / ".runtime" / "heartbeats" / f"{SESSION}.json").read_text())
    assert hb["state"] == "exiting"


def test_l_escalated_done_keeps_its_session_gastown_2026_5_6(ltown: Path, tmp_path: Path,
                                                              server: PrivateTmux) -> None:
    work = sling(ltown)
    marker = tmp_path / "rc"
    start_polecat(server, ltown, marker, "--status", "ESCALATED")
    poll_until(lambda: marker.is_file() and marker.read_text().strip(), timeout=20,
               what="gt done returned in the pane")
    assert marker.read_text().strip() == "0"
    assert SESSION in server.sessions()
    assert work_status(ltown, work) == "hooked"
    assert "agent_state: stuck" in agent_description(ltown)
