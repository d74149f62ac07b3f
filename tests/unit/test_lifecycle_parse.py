"""Pure pieces of lifecycle-mail: subject gate, action parsing, age verdicts, state files."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gastown_units.services.lifecycle_parse import (
    Action,
    confirmed,
    is_lifecycle,
    parse_action,
    state_file,
    too_old,
    without_request,
)
from gastown_units.town.identity import Identity, Role
from gastown_units.town.layout import Town
from tests.harness.town import make_town

NOW = datetime(2026, 1, 25, 18, 0, tzinfo=UTC)
SIX_HOURS = 6 * 3600.0


@pytest.mark.parametrize(("subject", "ours"), [
    ("LIFECYCLE: gastown/witness requesting cycle", True),
    ("lifecycle:restart", True),
    ("  Lifecycle: x", True),
    ("LIFECYCLE:Shutdown nux", True),  # a witness-bound form, still passes the gate
    ("Re: LIFECYCLE: x", False),
    ("LIFECYCLE x", False),
    ("POLECAT_DONE nux", False),
    ("", False),
])
def test_subject_gate(subject: str, ours: bool) -> None:
    assert is_lifecycle(subject) is ours


@pytest.mark.parametrize(("body", "action"), [
    ('{"action":"cycle"}', Action.CYCLE),
    ('{"action": "restart", "reason": "context full"}', Action.RESTART),
    ('{"action":"shutdown"}', Action.SHUTDOWN),
    ('{"action":"stop"}', Action.SHUTDOWN),
    ('  {"action":"CYCLE"}\n', Action.CYCLE),
    ("restart", Action.RESTART),
    ("action: restart", Action.RESTART),
    ("shutdown", Action.SHUTDOWN),
    ("Action: Shutdown", Action.SHUTDOWN),
    ("stop", Action.SHUTDOWN),
    (" cycle \n", Action.CYCLE),
    ("action: cycle", Action.CYCLE),
])
def test_actions_gas_town_accepts(body: str, action: Action) -> None:
    assert parse_action(body) is action


@pytest.mark.parametrize(("body", "why"), [
    ('{"action": ', "malformed JSON"),
    ('{"action":"dance"}', "unknown action 'dance'"),
    ('{"reason":"x"}', "no \"action\""),
    ('{"action": 3}', "no \"action\""),
    ("please cycle me", "not a lifecycle action"),
    ("action:cycle", "not a lifecycle action"),  # not one of Gas Town's exact forms
    ('"cycle"', "not a lifecycle action"),
    ("", "not a lifecycle action"),
])
def test_everything_else_is_not_understood(body: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_action(body)


@settings(deadline=None)  # a loaded test machine must not make this flaky
@given(st.text())
def test_body_parser_never_crashes(body: str) -> None:
    try:
        assert parse_action(body) in set(Action)
    except ValueError as exc:
        assert str(exc)


@settings(deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))
def test_body_parser_never_crashes_on_json(value: object) -> None:
    with contextlib.suppress(ValueError):
        parse_action(json.dumps({"action": value}))


def test_deeply_nested_json_is_refused_not_a_crash() -> None:
    with pytest.raises(ValueError):
        parse_action("[" * 100_000)


def test_age_limits() -> None:
    created = (NOW - timedelta(minutes=10)).timestamp()
    fresh = NOW - timedelta(minutes=1)
    assert too_old(fresh, NOW, SIX_HOURS, created) is None
    assert too_old(fresh, NOW, SIX_HOURS, None) is None
    expired = too_old(NOW - timedelta(hours=7), NOW, SIX_HOURS, None)
    assert expired is not None and expired.kind == "expired" and "7.0 h" in expired.detail
    stale = too_old(NOW - timedelta(minutes=11), NOW, SIX_HOURS, created)
    assert stale is not None and stale.kind == "stale"
    assert too_old(None, NOW, SIX_HOURS, created) is None  # no timestamp: fresh


def test_age_beats_staleness_and_the_session_second_is_not_stale() -> None:
    created = NOW.timestamp()
    same_second = NOW + timedelta(milliseconds=300)  # tmux reports whole seconds
    assert too_old(same_second, NOW, SIX_HOURS, created) is None
    old = too_old(NOW - timedelta(hours=8), NOW, SIX_HOURS, created)
    assert old is not None and old.kind == "expired"


@pytest.fixture
def town(tmp_path: Path) -> Town:
    return Town(make_town(tmp_path / "town").resolve())


def test_state_files_where_gas_town_kept_them(town: Town) -> None:
    root = town.root
    cases = [
        (Identity(Role.MAYOR), root / "mayor" / "state.json"),
        (Identity(Role.DEACON), root / "deacon" / "state.json"),
        (Identity(Role.WITNESS, "gastown"), root / "gastown" / "witness" / "state.json"),
        (Identity(Role.REFINERY, "gastown"), root / "gastown" / "refinery" / "state.json"),
        (Identity(Role.CREW, "gastown", "max"), root / "gastown" / "crew" / "max" / "state.json"),
        (Identity(Role.POLECAT, "gastown", "nux"),
         root / "gastown" / "polecats" / "nux" / "state.json"),
    ]
    (root / "gastown" / "witness" / "rig").mkdir()  # witness cwd moves; its state does not
    for who, path in cases:
        assert state_file(town, who.role, who.rig, who.workdir(town)) == path


def test_polecat_state_file_follows_the_new_worktree_layout(town: Town) -> None:
    tree = town.root / "gastown" / "polecats" / "nux" / "gastown"
    tree.mkdir(parents=True)
    who = Identity(Role.POLECAT, "gastown", "nux")
    assert state_file(town, who.role, who.rig, who.workdir(town)) == tree / "state.json"


def test_confirmation_and_clearing() -> None:
    state = {"role": "witness", "requesting_cycle": True, "requesting_time": "2026-01-25T18:00Z"}
    assert confirmed(state, Action.CYCLE)
    assert not confirmed(state, Action.RESTART)
    assert not confirmed({"requesting_cycle": "true"}, Action.CYCLE)  # JSON true only
    assert not confirmed(None, Action.CYCLE) and not confirmed([1], Action.CYCLE)
    assert without_request(state, Action.CYCLE) == {"role": "witness"}
    assert Action.SHUTDOWN.flag == "requesting_shutdown"
