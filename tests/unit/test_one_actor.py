"""Agent locks, shutdown markers, request decisions, start profiles, state files (issue 7)."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gastown_units.ports.agent_locks import AgentLocks
from gastown_units.services.lifecycle_parse import Action, RequestFacts, Verdict, decide
from gastown_units.services.profiles import Reason, pane_died_hook, start_profile
from gastown_units.services.restart_tracker import Policy, RestartTracker
from gastown_units.town.agents import PRESETS, AgentProgram, resolve_agent
from gastown_units.town.identity import Identity, Role
from gastown_units.town.layout import Town
from gastown_units.town.shutdown_marks import (
    clear_mark,
    mark_path,
    read_mark,
    write_mark,
)
from gastown_units.town.unit_state import load_state

SERVICES = Path(__file__).resolve().parents[2] / "gastown_units" / "services"


# --- agent locks -----------------------------------------------------------------------------
def test_a_lock_is_exclusive_between_processes_and_reentrant_within_one(tmp_path: Path) -> None:
    mine = AgentLocks(tmp_path, "witness@gastown")
    assert mine.acquire("gt-gastown-nux", "shutdown")
    assert mine.acquire("gt-gastown-nux", "again")  # re-entrant
    holder = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from gastown_units.ports.agent_locks import AgentLocks; "
         "print(AgentLocks(Path(sys.argv[1]), 'polecat-health').acquire('gt-gastown-nux', "
         "'restart'))", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert holder.stdout.strip() == "False", holder.stderr
    assert "witness@gastown shutdown" in mine.holder_of("gt-gastown-nux")
    mine.release("gt-gastown-nux")
    other = AgentLocks(tmp_path, "polecat-health")
    assert other.acquire("gt-gastown-nux", "restart")
    other.release_all()


def test_a_lock_held_by_a_dead_process_is_free(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from gastown_units.ports.agent_locks import AgentLocks; "
         "assert AgentLocks(Path(sys.argv[1]), 'lifecycle-mail').acquire('hq-deacon', 'cycle');"
         " print('held', flush=True); time.sleep(600)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        locks = AgentLocks(tmp_path, "deacon-keeper")
        assert not locks.acquire("hq-deacon", "keep")
        os.kill(child.pid, signal.SIGKILL)  # a supervisor killed mid-sequence
        child.wait(timeout=30)
        assert locks.acquire("hq-deacon", "keep")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_hostile_session_names_never_become_lock_paths(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        AgentLocks(tmp_path, "x").acquire("../../etc/passwd", "keep")


# --- shutdown markers ------------------------------------------------------------------------
def test_marker_round_trip_and_when_it_holds(tmp_path: Path) -> None:
    town = Town(tmp_path)
    mark = write_mark(town, "gt-gastown-nux", by="gastown/witness", hook_bead="gt-abc",
                      request="hq-1")
    read = read_mark(town, "gt-gastown-nux")
    assert read is not None and read.request == "hq-1" and read.hook_bead == "gt-abc"
    assert abs(read.at - mark.at) < 1
    assert read.holds() and read.holds(hook_bead="gt-abc")
    assert not read.holds(hook_bead="gt-new")
    assert not read.holds(session_created=mark.at + 5)
    assert read.holds(session_created=mark.at - 5)
    assert clear_mark(town, "gt-gastown-nux") and read_mark(town, "gt-gastown-nux") is None


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"at": 5}', "\udcff"])
def test_an_unreadable_marker_keeps_the_agent_down(tmp_path: Path, content: str) -> None:
    town = Town(tmp_path)
    path = mark_path(town, "hq-deacon")
    path.parent.mkdir(parents=True)
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    mark = read_mark(town, "hq-deacon")
    assert mark is not None and not mark.readable
    assert mark.holds(session_created=None) and mark.holds(hook_bead="gt-new")


# --- lifecycle request decisions -------------------------------------------------------------
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
request_facts = st.builds(
    RequestFacts,
    action=st.one_of(st.none(), st.sampled_from(list(Action))),
    sender_known=st.booleans(),
    sent=st.one_of(st.none(), st.integers(0, 48 * 3600).map(
        lambda s: NOW - timedelta(seconds=s))),
    now=st.just(NOW), max_age=st.just(6 * 3600.0),
    session_created=st.one_of(st.none(), st.integers(0, 48 * 3600).map(
        lambda s: (NOW - timedelta(seconds=s)).timestamp())),
    strict=st.booleans(), confirmed=st.booleans(), agent_ok=st.booleans(),
    rig_operational=st.booleans(), rig_unknown=st.booleans())


@given(request_facts)
def test_requests_are_acted_on_only_when_fresh_known_and_allowed(facts: RequestFacts) -> None:
    decision = decide(facts)
    fresh = facts.sent is None or (
        (facts.now - facts.sent).total_seconds() <= facts.max_age
        and (facts.session_created is None or facts.sent.timestamp() >= facts.session_created))
    if decision.verdict in (Verdict.ACT, Verdict.REFUSE):
        assert facts.action is not None and facts.sender_known and fresh
        assert not facts.strict or facts.confirmed
    if decision.verdict is Verdict.ACT and facts.action is not Action.SHUTDOWN:
        assert facts.agent_ok and facts.rig_operational and not facts.rig_unknown
    if decision.verdict is Verdict.DROP:
        assert not fresh and decision.old is not None
    if facts.rig_unknown and facts.action in (Action.CYCLE, Action.RESTART) and fresh:
        assert decision.verdict is not Verdict.REFUSE  # unknown is not "drop"


# --- start profiles --------------------------------------------------------------------------
CLAUDE = AgentProgram("claude", ("claude",))
OTHER = AgentProgram("codex", ("codex",), takes_prompt=False)


def test_every_role_has_one_profile_whichever_service_starts_it() -> None:
    polecat = Identity(Role.POLECAT, "gastown", "nux")
    for reason in Reason:
        profile = start_profile(polecat, CLAUDE, reason=reason)
        assert profile.pane_died_hook and profile.pre_sync
        assert profile.beacon is (reason is not Reason.CRASH)
    refinery = start_profile(Identity(Role.REFINERY, "gastown"), OTHER, ready_prompt="❯ ")
    assert refinery.ready_prompt == "❯ " and refinery.startup_nudge and refinery.pre_sync
    assert start_profile(Identity(Role.REFINERY, "gastown"), CLAUDE).startup_nudge is None
    witness = start_profile(Identity(Role.WITNESS, "gastown"), CLAUDE)
    assert not witness.pre_sync and not witness.pane_died_hook and witness.theme
    assert start_profile(Identity(Role.DEACON), CLAUDE).theme.label == "🐺 Deacon"
    assert "gt log crash --agent 'gastown/nux' --session 'gt-gastown-nux'" in \
        pane_died_hook(polecat)


def test_the_ready_wait_follows_the_runtime() -> None:
    """Contract §3.5: wait for the prompt only where the runtime has a known one (Claude's
    ``❯ ``); others wait their ready delay (codex 3 s, opencode 8 s)."""
    town = Town(Path("/nonexistent"))  # no settings files: the built-in presets
    refinery = Identity(Role.REFINERY, "gastown")
    claude = start_profile(refinery, resolve_agent(town, Role.REFINERY, None, None))
    assert (claude.ready_prompt, claude.ready_delay) == ("❯ ", 0.0)
    for name, delay in (("codex", 3.0), ("opencode", 8.0), ("gemini", 0.0)):
        agent = AgentProgram(name, (name,), ready_prompt=PRESETS[name].ready_prompt,
                             ready_delay=PRESETS[name].ready_delay)
        profile = start_profile(refinery, agent)
        assert (profile.ready_prompt, profile.ready_delay) == (None, delay), name
    forced = start_profile(refinery, OTHER, ready_prompt="> ")  # GT_READY_PROMPT
    assert (forced.ready_prompt, forced.ready_delay) == ("> ", 0.0)
    assert start_profile(Identity(Role.WITNESS, "gastown"), CLAUDE).ready_prompt is None


def test_no_service_imports_another() -> None:
    services = {"deacon_keeper", "witness", "refinery", "polecat_health", "lifecycle_mail"}
    own = {"witness": {"polecat_shutdown", "stuck_ladder", "rig_service"},
           "refinery": {"rig_service"}}
    for name in services:
        tree = ast.parse((SERVICES / f"{name}.py").read_text())
        imported = {node.module.rsplit(".", 1)[-1] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module
                    and node.module.startswith("gastown_units.services.")}
        assert not imported & (services - {name}), f"{name} imports {imported & services}"
        assert not imported & {"deacon_keeper", "refinery"} - own.get(name, set())


# --- our own state files ---------------------------------------------------------------------
@pytest.mark.parametrize("garbage", [b"{broken", b"\xff\xfe", b"[" * 100000])
def test_corrupt_restart_state_is_set_aside(tmp_path: Path, garbage: bytes,
                                            caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "restart_state.json"
    path.write_bytes(garbage)
    tracker = RestartTracker(path, Policy())
    tracker.load()
    assert tracker.agents == {}
    assert (tmp_path / "restart_state.json.bad").read_bytes() == garbage
    assert not path.exists() and "set aside" in caplog.text
    tracker.record("gt-gastown-nux", 1000.0)
    tracker.save()
    assert "gt-gastown-nux" in json.loads(path.read_text())["agents"]


def test_wrong_types_in_restart_state_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "restart_state.json"
    path.write_text(json.dumps({"agents": {"a": {"restart_count": "many"}, "b": 5,
                                           "c": {"restart_count": True}}}))
    tracker = RestartTracker(path, Policy())
    tracker.load()
    assert tracker.agents["a"].restart_count == 0 and "b" not in tracker.agents
    assert tracker.agents["c"].restart_count == 0


def test_corrupt_unit_state_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "witness-gastown.json"
    path.write_text("{oops")
    assert load_state(path) == {}
    assert (tmp_path / "witness-gastown.json.bad").exists()


# --- work left for a busy agent is retried soon ----------------------------------------------
def test_a_pass_that_left_work_for_a_busy_agent_runs_again_soon() -> None:
    import time

    from gastown_units.runtime.loop import Context, run_service

    class Busy:
        name = "busy"
        ticks: list[float] = []

        def setup(self, ctx: Context) -> str:
            return "ready"

        def tick(self, ctx: Context) -> str:
            self.ticks.append(time.monotonic())
            if len(self.ticks) == 1:
                ctx.retry_in(0.1)  # e.g. a LIFECYCLE request left: the agent was locked
            else:
                os.kill(os.getpid(), signal.SIGTERM)
            return "pass"

        def close(self) -> None:
            pass

    service = Busy()
    started = time.monotonic()
    assert run_service(service, interval=3600, once=False) == 0
    assert len(service.ticks) == 2 and service.ticks[1] - started < 60
