"""Restart backoff and crash loops (pure, on a temp file), and Go durations."""

from __future__ import annotations

import json
from pathlib import Path

from gastown_units.services.restart_tracker import Policy, RestartTracker
from gastown_units.town.events import go_duration

POLICY = Policy(base=30, cap=600, loop_count=5, loop_window=900, stable=1800)


def test_backoff_doubles_up_to_the_cap(tmp_path: Path) -> None:
    t = RestartTracker(tmp_path / "r.json", POLICY)
    now = 1000.0
    waits = []
    for _ in range(6):
        t.record("s", now)
        waits.append(t.agents["s"].backoff_until - now)
        now += 2000  # outside the loop window: the count starts again
    assert waits == [30] * 6
    t = RestartTracker(tmp_path / "r.json", Policy(base=30, cap=100, loop_count=99))
    for i in range(4):
        t.record("s", 1000.0 + i)
    assert t.agents["s"].backoff_until == 1003.0 + 100  # 30, 60, 120->100, 240->100
    assert t.blocked("s", 1050.0) and t.blocked("s", 2000.0) is None


def test_crash_loop_after_n_restarts_in_the_window(tmp_path: Path) -> None:
    t = RestartTracker(tmp_path / "r.json", POLICY)
    for i in range(5):
        assert not t.loops_now("s", 1000.0 + i)
        t.record("s", 1000.0 + i)
    assert t.loops_now("s", 1010.0)
    assert t.blocked("s", 99999.0) == "crash loop"
    assert not t.stable("s", 99999.0)  # a crash loop waits for a human
    assert t.clear("s") and t.blocked("s", 1011.0) is None


def test_stable_agent_gets_a_clean_slate(tmp_path: Path) -> None:
    t = RestartTracker(tmp_path / "r.json", POLICY)
    t.record("s", 1000.0)
    assert not t.stable("s", 1000.0 + 1799)
    assert t.stable("s", 1000.0 + 1800) and "s" not in t.agents


def test_state_round_trips_in_gas_towns_shape(tmp_path: Path) -> None:
    path = tmp_path / "restart_state.json"
    t = RestartTracker(path, POLICY)
    t.record("gt-gastown-nux", 1767225600.0)
    t.save()
    data = json.loads(path.read_text())
    entry = data["agents"]["gt-gastown-nux"]
    assert entry["restart_count"] == 1 and entry["last_restart"] == "2026-01-01T00:00:00Z"
    assert entry["crash_loop_since"] == "0001-01-01T00:00:00Z"
    again = RestartTracker(path, POLICY)
    again.load()
    assert again.agents == t.agents


def test_go_durations() -> None:
    assert go_duration(30) == "30s"
    assert go_duration(45 * 60 + 20, round_to_minute=True) == "45m0s"
    assert go_duration(3720, round_to_minute=True) == "1h2m0s"
    assert go_duration(900) == "15m0s"
