"""The polecat sweep's pure decisions, over whole sequences of sweeps (hypothesis).

Each test drives :func:`plan_sweep` the way polecat-health does: facts in, plan out, the
plan's state and tracker carried to the next sweep. The invariants are those of issue 7:
no restart while another service acts on a polecat, none after a shutdown on request
(until new work is hooked), none on missing information, GUPP once per bead, one
mass-death event per three deaths, a crash loop stops restarts.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gastown_units.services.polecat_plan import (
    Act,
    Limits,
    PolecatFacts,
    SweepState,
    plan_sweep,
)
from gastown_units.services.restart_tracker import Policy, Restarts, RestartTracker
from gastown_units.services.sessions import Liveness
from gastown_units.town.shutdown_marks import ShutdownMark

LIMITS = Limits(gupp_timeout=1800, spawn_grace=300, mass_death_count=3, mass_death_window=30)
POLICY = Policy(base=30, cap=600, loop_count=5, loop_window=900, stable=1800)


def facts(name: str = "nux", **kw: object) -> PolecatFacts:
    base = dict(session=f"gt-gastown-{name}", address=f"gastown/{name}", rig="gastown",
                name=name, bead_id=f"gt-gastown-polecat-{name}", liveness=Liveness.MISSING,
                hook_bead="gt-abc", agent_state="working", updated_at=0.0,
                hooked_status="hooked")
    base.update(kw)
    return PolecatFacts(**base)  # type: ignore[arg-type]


def tracker(policy: Policy = POLICY) -> RestartTracker:
    return RestartTracker(Path("/nonexistent/restart_state.json"), policy)


def run(sequence: list[list[PolecatFacts]], times: list[float], policy: Policy = POLICY):
    """Plan each sweep in turn; every mail counts as sent. Yields the plans."""
    state, track = SweepState(), tracker(policy)
    for sweep, now in zip(sequence, times, strict=True):
        plan = plan_sweep(sweep, state, track, LIMITS, now)
        for step in plan.polecats:
            for mail in step.mails:
                plan.state.incidents[mail.key] = mail.value
        state, track = plan.state, plan.tracker
        yield plan


def test_a_crashed_polecat_is_restarted_and_its_orphaned_work_mailed_once() -> None:
    plans = list(run([[facts()], [facts()]], [1000.0, 1001.0]))
    first = plans[0].polecats[0]
    assert first.act is Act.RESTART
    assert [m.subject for m in first.mails] == [
        "ORPHANED_WORK: gt-gastown-polecat-nux has hooked work but is dead"]
    second = plans[1].polecats[0]
    assert second.act is Act.HOLD and second.mails == ()  # backing off, told once


def test_a_death_with_the_tmux_server_waits_out_no_backoff() -> None:
    """A polecat restarted at 1000 backs off until 1030; the tmux server restarts at 1005
    (a reboot, gastown-tmux restarted) and takes its session: that is not its crash, so it
    comes back at once and its backoff is not raised. A crash after that, in the new
    server's life, is its own again and backs off."""
    state, track = SweepState(), tracker()
    first = plan_sweep([facts()], state, track, LIMITS, 1000.0)
    assert first.polecats[0].act is Act.RESTART
    held = plan_sweep([facts()], first.state, first.tracker, LIMITS, 1006.0)
    assert held.polecats[0].act is Act.HOLD  # the server's start time unknown: held
    older = plan_sweep([facts()], first.state, first.tracker, LIMITS, 1006.0,
                       server_started=999.0)  # a server older than the restart: its crash
    assert older.polecats[0].act is Act.HOLD
    back = plan_sweep([facts()], first.state, first.tracker, LIMITS, 1006.0,
                      server_started=1005.0)
    assert back.polecats[0].act is Act.RESTART
    assert any("ended with the tmux server" in text for _, text in back.polecats[0].logs)
    entry = back.tracker.agents["gt-gastown-nux"]
    assert (entry.restart_count, entry.backoff_until) == (1, 1030.0)  # not raised
    again = plan_sweep([facts()], back.state, back.tracker, LIMITS, 1008.0,
                       server_started=1005.0)
    assert again.polecats[0].act is Act.HOLD  # its own crash: backing off until 1030


def test_a_crash_loop_is_not_ended_by_the_tmux_server() -> None:
    track = tracker()
    track.agents["gt-gastown-nux"] = Restarts(last_restart=1000.0, restart_count=5,
                                              backoff_until=1600.0, crash_loop_since=1000.0)
    plan = plan_sweep([facts()], SweepState(), track, LIMITS, 1100.0, server_started=1050.0)
    assert plan.polecats[0].act is Act.HOLD


def test_plan_does_not_change_its_inputs() -> None:
    state, track = SweepState(), tracker()
    plan_sweep([facts()], state, track, LIMITS, 1000.0)
    assert state == SweepState() and track.agents == {}


liveness = st.sampled_from(list(Liveness))
one_polecat = st.builds(
    facts,
    liveness=liveness,
    hook_bead=st.sampled_from(["", "gt-abc", "gt-def"]),
    agent_state=st.sampled_from(["working", "done", "spawning", ""]),
    hooked_status=st.sampled_from([None, "hooked", "closed", "tombstone", "open"]),
    busy=st.booleans(),
    mark=st.one_of(st.none(), st.builds(ShutdownMark, session=st.just("gt-gastown-nux"),
                                        at=st.just(500.0),
                                        hook_bead=st.sampled_from([None, "", "gt-abc"]))),
)


@given(st.lists(one_polecat, min_size=1, max_size=30))
def test_no_restart_without_positive_evidence(sweeps: list[PolecatFacts]) -> None:
    times = [1000.0 + 60 * i for i in range(len(sweeps))]
    for plan, seen in zip(run([[f] for f in sweeps], times), sweeps, strict=True):
        step = plan.polecats[0]
        if step.act is not Act.RESTART:
            continue
        assert seen.liveness is not Liveness.RUNNING
        assert seen.hook_bead and not seen.busy
        assert seen.agent_state not in ("done", "nuked")
        assert seen.hooked_status not in (None, "closed", "tombstone")
        assert seen.mark is None or not seen.mark.holds(
            session_created=seen.session_created, hook_bead=seen.hook_bead,
            bead_updated=seen.updated_at)
        assert step.kill_first == (seen.liveness is Liveness.ZOMBIE)


@given(st.lists(st.booleans(), min_size=1, max_size=40))
def test_a_busy_polecat_is_never_restarted_nor_booked(busy: list[bool]) -> None:
    times = [1000.0 + 3600 * i for i in range(len(busy))]  # backoff always expired
    for plan, was_busy in zip(run([[facts(busy=b)] for b in busy], times), busy,
                              strict=True):
        if was_busy:
            assert plan.polecats[0].act is Act.NOTHING
    booked = plan.tracker.agents.get("gt-gastown-nux")
    assert (booked.restart_count if booked else 0) <= busy.count(False)


@given(st.integers(min_value=1, max_value=12))
def test_shutdown_marker_holds_until_new_work(sweeps: int) -> None:
    mark = ShutdownMark("gt-gastown-nux", 500.0, "gastown/witness", "gt-abc")
    down = [[facts(mark=mark, updated_at=600.0)] for _ in range(sweeps)]
    plans = list(run([*down, [facts(mark=mark, hook_bead="gt-new")]],
                     [1000.0 + i for i in range(sweeps + 1)]))
    assert all(p.polecats[0].act is Act.NOTHING for p in plans[:-1])
    assert all(not p.polecats[0].mails for p in plans[:-1])
    last = plans[-1].polecats[0]
    assert last.act is Act.RESTART and last.clear_mark


def test_unknown_hook_at_shutdown_holds_until_the_bead_changes() -> None:
    mark = ShutdownMark("gt-gastown-nux", 500.0, "deacon/", None)
    kept, = next(run([[facts(mark=mark, updated_at=400.0)]], [1000.0])).polecats
    assert kept.act is Act.NOTHING
    freed, = next(run([[facts(mark=mark, updated_at=700.0)]], [1000.0])).polecats
    assert freed.act is Act.RESTART


def test_a_newer_session_forgets_the_marker() -> None:
    mark = ShutdownMark("gt-gastown-nux", 500.0)
    alive, = next(run([[facts(mark=mark, liveness=Liveness.RUNNING, session_created=900.0)]],
                      [1000.0])).polecats
    assert alive.clear_mark
    older, = next(run([[facts(mark=mark, liveness=Liveness.RUNNING, session_created=400.0)]],
                      [1000.0])).polecats
    assert not older.clear_mark


@given(st.integers(min_value=1, max_value=8))
def test_crash_loop_stops_restarts(extra: int) -> None:
    quick = Policy(base=1, cap=1, loop_count=5, loop_window=900, stable=1800)
    times = [1000.0 + 2 * i for i in range(quick.loop_count + extra)]  # backoff expired
    plans = list(run([[facts()] for _ in times], times, quick))
    acts = [p.polecats[0].act for p in plans]
    assert acts == [Act.RESTART] * quick.loop_count + [Act.HOLD] * extra
    loops = [m for p in plans for m in p.polecats[0].mails if m.subject.startswith("CRASH_LOOP")]
    assert sorted(m.to for m in loops) == ["", "mayor/"]  # the witness and mayor/, once each
    # loop_count restarts, then the death that made it a loop: the mails count restarts
    assert all("was restarted 5 times within 15m0s and crashed again" in m.body
               for m in loops), [m.body for m in loops]
    events = [e for p in plans for e, _ in p.polecats[0].events]
    assert events == ["crash-loop"]


def test_the_mayors_crash_loop_mail_is_retried_until_sent_and_survives_a_reload(
        tmp_path: Path) -> None:
    quick = Policy(base=1, cap=1, loop_count=2, loop_window=900, stable=1800)
    state, track = SweepState(), RestartTracker(tmp_path / "restart_state.json", quick)
    mayor = []
    for i in range(6):
        plan = plan_sweep([facts()], state, track, LIMITS, 1000.0 + 2 * i)
        for mail in plan.polecats[0].mails:
            if mail.to == "mayor/":
                mayor.append(i)
                if i < 3:
                    continue  # sending failed: not recorded
            plan.state.incidents[mail.key] = mail.value
        plan.tracker.save()  # a new service run reads the files again
        track = RestartTracker(tmp_path / "restart_state.json", quick)
        track.load()
        state = SweepState.from_json(plan.state.to_json())
    assert mayor == [2, 3]  # the loop begins at sweep 2; sent (recorded) at sweep 3


@given(st.lists(st.integers(min_value=0, max_value=120), min_size=3, max_size=20))
def test_mass_death_is_one_event_per_three_deaths_in_the_window(gaps: list[int]) -> None:
    names = [f"p{i}" for i in range(len(gaps))]
    times, now = [], 1000.0
    for gap in gaps:
        now += gap
        times.append(now)
    # Each sweep sees one more polecat dead (the earlier ones were restarted: alive).
    sequence = [[facts(n, liveness=Liveness.MISSING if j == i else Liveness.RUNNING)
                 for j, n in enumerate(names[:i + 1])] for i in range(len(names))]
    events = [p.mass_death for p in run(sequence, times) if p.mass_death]
    expected, window = 0, []
    for t in times:
        window = [w for w in window if t - w <= LIMITS.mass_death_window] + [t]
        if len(window) >= LIMITS.mass_death_count:
            expected, window = expected + 1, []
    assert len(events) == expected
    assert all(len(e) >= LIMITS.mass_death_count for e in events)


@given(st.integers(min_value=2, max_value=10))
def test_gupp_is_mailed_once_per_bead(sweeps: int) -> None:
    stale = [[facts(liveness=Liveness.RUNNING, updated_at=0.0)] for _ in range(sweeps)]
    plans = list(run(stale, [10000.0 + i for i in range(sweeps)]))
    gupp = [m for p in plans for m in p.polecats[0].mails
            if m.subject.startswith("GUPP_VIOLATION")]
    assert len(gupp) == 1
    fresh = list(run([*stale, [facts(liveness=Liveness.RUNNING, hook_bead="gt-new",
                                     updated_at=0.0)]],
                     [10000.0 + i for i in range(sweeps + 1)]))
    assert [m.subject.startswith("GUPP") for m in fresh[-1].polecats[0].mails] == [True]


def test_gone_work_is_reported_once_and_never_restarted() -> None:
    plans = list(run([[facts(hooked_status="tombstone")]] * 3, [1000.0, 2000.0, 3000.0]))
    assert [p.polecats[0].act for p in plans] == [Act.NOTHING] * 3
    mails = [m.subject for p in plans for m in p.polecats[0].mails]
    assert mails == ["STALE_HOOK: gt-gastown-polecat-nux hooks gt-abc, which is a tombstone"]


def test_sweep_state_drops_entries_of_the_wrong_type() -> None:
    state = SweepState.from_json({"incidents": {"a": "x", "b": 5}, "dead": [1],
                                  "deaths": [[1.5, "s"], ["x", "s"], [True, "s"], 3]})
    assert state == SweepState({"a": "x"}, {}, [(1.5, "s")])
    assert SweepState.from_json("garbage") == SweepState()
