"""attach/capture/logs/hold/release: argv building, identities, hold files (no tmux)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gastown_units.cli import main
from gastown_units.commands import agents
from gastown_units.errors import BadInput, GastownError
from gastown_units.ports.operator import Owner
from gastown_units.ports.tmux import Tmux
from gastown_units.services.polecat_plan import Act, Limits, PolecatFacts, SweepState, plan_sweep
from gastown_units.services.restart_tracker import Policy, RestartTracker
from gastown_units.services.sessions import Liveness
from gastown_units.town.holds import all_holds, hold_path, is_held, read_hold, write_hold
from gastown_units.town.identity import BOOT, DEACON, Identity, IdentityParser, Role
from gastown_units.town.layout import Town
from tests.harness.town import make_town

ALICE = Owner("alice", 1000, Path("/home/alice"), "test")
ROOT = Owner("root", 0, Path("/root"), "test")
WITNESS = Identity(Role.WITNESS, "gastown")


@pytest.fixture(autouse=True)
def _no_host_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GT_CONFIG", "")
    for name in ("GT_TOWN_ROOT", "GT_TMUX_SOCKET", "SUDO_USER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(agents, "JOURNAL_SOCKET", Path("/nonexistent/journal"))


# --- argv --------------------------------------------------------------------------------
def test_attach_as_the_owner_is_plain_tmux_on_the_socket() -> None:
    tmux = Tmux(socket="gt")
    assert agents.attach_argv(tmux, "gt-gastown-witness", ALICE, euid=1000) == [
        "tmux", "-N", "-u", "-L", "gt", "attach-session", "-t", "=gt-gastown-witness"]


def test_attach_as_root_runs_the_client_as_the_owner_on_the_owners_socket() -> None:
    tmux = Tmux(socket="gt", socket_path=Path("/tmp/tmux-1000/gt"))
    assert agents.attach_argv(tmux, "hq-deacon", ALICE, euid=0) == [
        "runuser", "-u", "alice", "--", "tmux", "-N", "-u", "-S", "/tmp/tmux-1000/gt",
        "attach-session", "-t", "=hq-deacon"]


def test_attach_as_root_of_a_root_town_needs_no_runuser() -> None:
    argv = agents.attach_argv(Tmux(), "hq-deacon", ROOT, euid=0)
    assert argv == ["tmux", "-N", "-u", "attach-session", "-t", "=hq-deacon"]


def test_attach_refuses_an_owner_without_a_name() -> None:
    with pytest.raises(GastownError, match="no user name"):
        agents.attach_argv(Tmux(), "hq-deacon", Owner("1234", 1234, Path("/"), "t"), euid=0)


@pytest.mark.parametrize("session", ["-t", "a b", "x;rm", "=hq", "a\nb", "", "../x"])
def test_hostile_session_names_never_reach_an_argv(session: str) -> None:
    with pytest.raises(BadInput):
        agents.attach_argv(Tmux(), session, ALICE, euid=1000)
    with pytest.raises(BadInput):
        agents.capture_argv(Tmux(), session, 10)


def test_capture_argv_asks_for_the_last_n_lines() -> None:
    assert agents.capture_argv(Tmux(socket="s"), "gt-gastown-nux", 50) == [
        "tmux", "-N", "-u", "-L", "s", "capture-pane", "-p", "-t", "=gt-gastown-nux:", "-S", "-50"]
    with pytest.raises(GastownError):
        agents.capture_argv(Tmux(), "gt-gastown-nux", 0)


def test_logs_argv_matches_the_agent_field_in_both_spellings() -> None:
    assert agents.logs_argv(WITNESS) == [
        "journalctl", "GT_AGENT=gastown/witness", "GT_AGENT=gt-gastown-witness",
        "--no-pager", "-o", "short-iso"]
    assert agents.logs_argv(DEACON, follow=True, lines=20) == [
        "journalctl", "GT_AGENT=deacon/", "GT_AGENT=hq-deacon", "-f", "-n", "20",
        "--no-pager", "-o", "short-iso"]


def test_units_of_each_role() -> None:
    nux = Identity(Role.POLECAT, "gastown", "nux")
    assert agents.units_of(nux) == ["gastown-polecat-health.service",
                                    "gastown-witness@gastown.service",
                                    "gastown-lifecycle-mail.service"]
    assert agents.units_of(BOOT) == ["gastown-deacon-keeper.service"]
    assert agents.units_of(WITNESS)[0] == "gastown-witness@gastown.service"


# --- identities ----------------------------------------------------------------------------
@pytest.mark.parametrize("spelling", ["gastown/witness", "gt-gastown-witness",
                                      "gastown-witness", " gastown/witness/ "])
def test_every_spelling_resolves(spelling: str) -> None:
    parser = IdentityParser(rigs=["gastown"])
    assert agents.identify(parser, spelling, ["gastown"]) == WITNESS


@pytest.mark.parametrize("spelling", ["nosuch/witness", "gt-other-witness"])
def test_an_unknown_rig_is_one_clear_error(spelling: str) -> None:
    with pytest.raises(GastownError, match="is not in the town's rigs.json"):
        agents.identify(IdentityParser(rigs=["gastown"]), spelling, ["gastown"])


@pytest.mark.parametrize("spelling", ["", "-x", "gastown/$(rm -rf /)", "gastown/a b",
                                      "gastown/../../etc", "x" * 300, "gastown/nux\n-t"])
def test_hostile_agent_spellings_are_refused(spelling: str) -> None:
    with pytest.raises(GastownError):
        agents.identify(IdentityParser(rigs=["gastown"]), spelling, ["gastown"])


def test_operator_name_prefers_sudo_user() -> None:
    assert agents.operator_name({"SUDO_USER": "alice"}, euid=0) == "alice"
    assert agents.operator_name({}, euid=0) == "root"


# --- hold files ----------------------------------------------------------------------------
def test_hold_file_round_trip(tmp_path: Path) -> None:
    town = Town.open(make_town(tmp_path / "town"))
    assert read_hold(town, "hq-deacon") is None
    written = write_hold(town, "hq-deacon", "alice", "debugging", now=1_800_000_000)
    held = read_hold(town, "hq-deacon")
    assert held == written
    assert held is not None and held.describe() == (
        "held by alice since 2027-01-15 08:00:00 UTC (reason: debugging)")
    assert set(all_holds(town)) == {"hq-deacon"}


@pytest.mark.parametrize("content", ["{not json", "[]", "", "\xff\xfe"])
def test_a_damaged_hold_file_holds(tmp_path: Path, content: str) -> None:
    town = Town.open(make_town(tmp_path / "town"))
    path = hold_path(town, "gt-gastown-witness")
    path.parent.mkdir(parents=True)
    path.write_bytes(content.encode("latin-1"))
    hold = read_hold(town, "gt-gastown-witness")
    assert hold is not None and hold.damaged
    assert is_held(town, "gt-gastown-witness")
    assert "counted as held" in hold.describe()
    assert "gt-gastown-witness" in all_holds(town)


def test_hold_files_of_no_session_name_are_ignored(tmp_path: Path) -> None:
    town = Town.open(make_town(tmp_path / "town"))
    (town.daemon_dir / "holds").mkdir()
    (town.daemon_dir / "holds" / "a b.json").write_text("{}")
    assert all_holds(town) == {}


# --- the commands (in process) -----------------------------------------------------------------
def test_hold_and_release_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_town(tmp_path / "town")
    monkeypatch.setenv("SUDO_USER", "alice")
    town = ["--town", str(root)]
    assert main(["hold", "gt-gastown-witness", "--reason", "rebuilding", *town]) == 0
    out = capsys.readouterr().out
    assert "gastown/witness (gt-gastown-witness) is now held by alice since" in out
    data = json.loads((root / "daemon" / "holds" / "gt-gastown-witness.json").read_text())
    assert (data["by"], data["reason"], data["session"]) == ("alice", "rebuilding",
                                                            "gt-gastown-witness")
    assert main(["hold", "gastown/witness", *town]) == 0  # idempotent
    assert "already held by alice" in capsys.readouterr().out
    assert json.loads((root / "daemon" / "holds" / "gt-gastown-witness.json").read_text()
                      ) == data
    assert main(["release", "gastown-witness", *town]) == 0
    assert "released gastown/witness" in capsys.readouterr().out
    assert not (root / "daemon" / "holds" / "gt-gastown-witness.json").exists()
    assert main(["release", "gastown/witness", *town]) == 1
    assert "is not held" in capsys.readouterr().err


def test_hold_repairs_a_damaged_hold_file(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    root = make_town(tmp_path / "town")
    (root / "daemon" / "holds").mkdir()
    damaged = root / "daemon" / "holds" / "hq-deacon.json"
    damaged.write_text("{oops")
    assert main(["release", "hq-deacon", "--town", str(root)]) == 0
    assert "was held (hold file unreadable" in capsys.readouterr().out
    damaged.write_text("{oops")
    assert main(["hold", "deacon", "--town", str(root)]) == 0
    assert "is now held by" in capsys.readouterr().out
    assert json.loads(damaged.read_text())["session"] == "hq-deacon"


@pytest.mark.parametrize("command", ["hold", "release", "attach", "capture", "logs"])
def test_unknown_agents_fail_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         command: str) -> None:
    root = make_town(tmp_path / "town")
    assert main([command, "nosuch/witness", "--town", str(root)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "rig 'nosuch' is not in" in err
    assert main([command, "gastown/$(id)", "--town", str(root)]) == 1
    assert "unknown agent identity" in capsys.readouterr().err
    assert not (root / "daemon" / "holds").exists()


# --- polecat-health's plan -------------------------------------------------------------------
def _facts(**kw: object) -> PolecatFacts:
    base = dict(session="gt-gastown-nux", address="gastown/nux", rig="gastown", name="nux",
                bead_id="gt-gastown-polecat-nux", liveness=Liveness.MISSING, hook_bead="gt-1",
                agent_state="working", hooked_status="open")
    base.update(kw)
    return PolecatFacts(**base)  # type: ignore[arg-type]


def test_a_held_dead_polecat_is_not_restarted_counted_or_mailed(tmp_path: Path) -> None:
    tracker = RestartTracker(tmp_path / "r.json", Policy())
    state = SweepState()
    held = _facts(held="held by alice since x", held_incident="alice|1|")
    for sweep in range(3):
        plan = plan_sweep([held] * 1, state, tracker, Limits(), 1000.0 + sweep)
        step = plan.polecats[0]
        assert step.act is Act.ON_HOLD and not step.mails and not plan.mass_death
        assert len(step.logs) == (1 if sweep == 0 else 0)  # once per hold
        assert not plan.state.dead
        state, tracker = plan.state, plan.tracker
    plan = plan_sweep([_facts()], state, tracker, Limits(), 2000.0)
    step = plan.polecats[0]
    assert step.act is Act.RESTART
    assert "no longer held" in step.logs[0][1]


@pytest.mark.skipif(shutil.which("journalctl") is None, reason="no journalctl")
def test_logs_runs_journalctl_and_names_the_units(tmp_path: Path) -> None:
    root = make_town(tmp_path / "town")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GT_")}
    env.update(GT_CONFIG="", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    result = subprocess.run([sys.executable, "-m", "gastown_units", "logs", "gastown/nux",
                             "-n", "3", "--town", str(root)], capture_output=True, text=True,
                            timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert ("journal entries about gastown/nux (gt-gastown-nux), logged by: "
            "gastown-polecat-health.service, gastown-witness@gastown.service, "
            "gastown-lifecycle-mail.service") in result.stderr
    assert "Traceback" not in result.stderr
