"""Pure pieces of the Witness: the stuck ladder, shutdown-request parsing, wisp gating."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gastown_units.ports.mail import Message
from gastown_units.services.polecat_shutdown import is_shutdown_request, polecat_of
from gastown_units.services.profiles import fnv1a_32, rig_theme
from gastown_units.services.stuck_ladder import Entry, Step, is_reset, next_step
from gastown_units.town.identity import Identity, Role
from gastown_units.town.layout import Town
from gastown_units.town.wisp import read_wisp_config
from tests.harness.town import make_town

T, GAP = 1800.0, 600.0  # threshold, interval between steps


def test_ladder_steps_in_order_and_waits_between() -> None:
    act = 0.0
    assert next_step(None, act, 100.0, threshold=T, interval=GAP) is None  # not stuck yet
    assert next_step(None, act, T, threshold=T, interval=GAP) is Step.NUDGE
    nudged = Entry(1, act, T)
    assert next_step(nudged, act, T + GAP - 1, threshold=T, interval=GAP) is None
    assert next_step(nudged, act, T + GAP, threshold=T, interval=GAP) is Step.ESCALATE
    escalated = Entry(2, act, T + GAP)
    assert next_step(escalated, act, T + 2 * GAP, threshold=T, interval=GAP) is Step.WAIT
    waiting = Entry(3, act, T + 2 * GAP)
    assert next_step(waiting, act, T + 99 * GAP, threshold=T, interval=GAP) is None


def test_ladder_resets_on_activity() -> None:
    entry = Entry(2, 0.0, 5000.0)
    assert is_reset(entry, 4000.0, 5001.0, T)  # new activity
    assert not is_reset(entry, 0.0, 9000.0, T)
    assert next_step(entry, 4000.0, 4000.0 + T, threshold=T, interval=GAP) is Step.NUDGE
    assert Entry.from_json(entry.to_json()) == entry
    assert Entry.from_json({"step": "x"}) is None and Entry.from_json(None) is None


def _msg(subject: str, body: str = "") -> Message:
    return Message("hq-1", "x", "gastown/witness", subject, body, None, False)


@pytest.mark.parametrize(("subject", "body", "name"), [
    ("LIFECYCLE:Shutdown nux", "", "nux"),
    ("LIFECYCLE:Shutdown gastown/polecats/nux", "", "nux"),
    ("LIFECYCLE: polecat-nux requesting shutdown", "Action: shutdown", "nux"),
    ("lifecycle: gastown/nux requesting shutdown", "", "nux"),
    ("LIFECYCLE: shutdown please", "Polecat: toast\nReason: done", "toast"),
    ("LIFECYCLE:Shutdown ../../etc", "", None),
])
def test_shutdown_requests_name_their_polecat(subject: str, body: str,
                                              name: str | None) -> None:
    message = _msg(subject, body)
    assert is_shutdown_request(message)
    assert polecat_of(message, "gastown") == name


def test_other_mail_is_not_a_shutdown_request() -> None:
    assert not is_shutdown_request(_msg("POLECAT_DONE nux"))
    assert not is_shutdown_request(_msg("LIFECYCLE: gastown/witness requesting cycle"))


def test_wisp_gating(tmp_path: Path) -> None:
    town = Town(make_town(tmp_path / "t"))
    assert read_wisp_config(town, "gastown").not_operational_reason() is None
    path = town.wisp_config("gastown")
    path.parent.mkdir(parents=True)
    cases = [({"values": {"status": "parked"}}, "rig is parked"),
             ({"values": {"status": "docked"}}, "rig is docked"),
             ({"values": {"auto_restart": False}}, "auto_restart is false"),
             ({"values": {"auto_restart": True}, "blocked": ["auto_restart"]},
              "auto_restart is blocked"),
             ({"values": {"status": "parked"}, "blocked": ["status"]}, None)]
    for data, reason in cases:
        path.write_text(json.dumps(data))
        assert read_wisp_config(town, "gastown").not_operational_reason() == reason
    path.write_text("[1, 2]")
    with pytest.raises(ValueError):
        read_wisp_config(town, "gastown")


def test_rig_theme_is_stable() -> None:
    assert fnv1a_32("") == 2166136261
    theme = rig_theme(Identity(Role.WITNESS, "gastown"))
    assert theme == rig_theme(Identity(Role.REFINERY, "gastown")).__class__(
        theme.bg, theme.fg, "🦉 gastown/witness")
    assert rig_theme(Identity(Role.POLECAT, "gastown", "nux")).label == "😺 gastown/nux"
