"""The identity table: every spelling parses back to the same agent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gastown_units.town.identity import BOOT, DEACON, MAYOR, Identity, IdentityParser, Role

PARSER = IdentityParser(rigs=["gastown", "my-rig", "beads"],
                        prefixes={"gastown": "gt", "my-rig": "mr", "beads": "bd"})


@pytest.mark.parametrize(("spelling", "expected"), [
    ("mayor/", MAYOR), ("mayor", MAYOR), ("hq-mayor", MAYOR), ("gt-mayor", MAYOR),
    ("deacon/", DEACON), ("hq-deacon", DEACON), ("gt-deacon", DEACON),
    ("gt-boot", BOOT), ("deacon-boot", BOOT), ("gt-deacon-boot", BOOT), ("hq-boot", BOOT),
    ("gastown/witness", Identity(Role.WITNESS, "gastown")),
    ("gastown-witness", Identity(Role.WITNESS, "gastown")),
    ("gt-gastown-witness", Identity(Role.WITNESS, "gastown")),
    ("gastown/refinery", Identity(Role.REFINERY, "gastown")),
    ("gastown-refinery", Identity(Role.REFINERY, "gastown")),
    ("gastown/nux", Identity(Role.POLECAT, "gastown", "nux")),
    ("gastown/polecats/nux", Identity(Role.POLECAT, "gastown", "nux")),
    ("gt-gastown-polecat-nux", Identity(Role.POLECAT, "gastown", "nux")),
    ("gastown-polecat-nux", Identity(Role.POLECAT, "gastown", "nux")),
    ("gt-gastown-nux", Identity(Role.POLECAT, "gastown", "nux")),
    ("gastown/crew/max", Identity(Role.CREW, "gastown", "max")),
    ("gastown-crew-max", Identity(Role.CREW, "gastown", "max")),
    ("gt-gastown-crew-max", Identity(Role.CREW, "gastown", "max")),
    ("mr-my-rig-polecat-a-b", Identity(Role.POLECAT, "my-rig", "a-b")),
    ("gt-my-rig-witness", Identity(Role.WITNESS, "my-rig")),
    ("st-stockdrop-polecat-nux", Identity(Role.POLECAT, "stockdrop", "nux")),
])
def test_parse_every_spelling(spelling: str, expected: Identity) -> None:
    assert PARSER.parse(spelling) == expected


@pytest.mark.parametrize("bad", ["", "  ", "x", "gt-", "a/b/c", "gastown/witness/x",
                                 "gastown/../etc", "gastown/po;rm -rf", "/"])
def test_parse_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        PARSER.parse(bad)


def test_renderings_of_a_polecat() -> None:
    who = Identity(Role.POLECAT, "gastown", "Toast")
    assert who.address == "gastown/Toast"
    assert who.legacy == "gastown-polecat-Toast"
    assert who.session == "gt-gastown-Toast"
    assert who.bead_id("gt") == "gt-gastown-polecat-Toast"
    assert who.bd_actor == "gastown/polecats/Toast"
    assert who.git_author_name == "Toast"


def test_town_agents_render_as_of_january() -> None:
    assert (DEACON.session, DEACON.bead_id(), DEACON.address) == ("hq-deacon", "hq-deacon",
                                                                 "deacon/")
    assert (BOOT.session, BOOT.bd_actor, BOOT.bead_id()) == ("gt-boot", "deacon-boot", None)
    assert MAYOR.session == "hq-mayor"


def test_address_is_crew_when_the_crew_dir_exists() -> None:
    parser = IdentityParser(rigs=["gastown"], is_crew=lambda rig, name: name == "max")
    assert parser.parse("gastown/max").role is Role.CREW
    assert parser.parse("gastown/nux").role is Role.POLECAT


def test_identity_rejects_unsafe_names() -> None:
    with pytest.raises(ValueError):
        Identity(Role.WITNESS, "bad rig")
    with pytest.raises(ValueError):
        Identity(Role.POLECAT, "gastown", "a:b")
    with pytest.raises(ValueError):
        Identity(Role.DEACON, "gastown")


_names = st.from_regex(r"^[A-Za-z0-9_]{1,12}$", fullmatch=True)
_rigs = st.from_regex(r"^[A-Za-z0-9_]{1,8}(-[A-Za-z0-9_]{1,8})?$", fullmatch=True)


@given(role=st.sampled_from(list(Role)), rig=_rigs, name=_names)
def test_every_rendering_parses_back(role: Role, rig: str, name: str) -> None:
    if role in (Role.MAYOR, Role.DEACON, Role.BOOT):
        who = Identity(role)
    elif role in (Role.POLECAT, Role.CREW):
        who = Identity(role, rig, name)
    else:
        who = Identity(role, rig)
    parser = IdentityParser(rigs=[rig], prefixes={rig: "zz"},
                            is_crew=lambda _r, _n: who.role is Role.CREW)
    spellings = {who.address, who.legacy, who.session, who.bd_actor}
    bead = who.bead_id("zz")
    if bead:
        spellings.add(bead)
    for spelling in spellings:
        if who.role is Role.POLECAT and name in ("witness", "refinery") and "/" not in spelling:
            continue  # "gt-<rig>-witness" is the witness, by Gas Town's own rules
        assert parser.parse(spelling) == who, spelling


@given(st.text(max_size=40))
def test_parse_never_crashes(text: str) -> None:
    try:
        who = PARSER.parse(text)
    except ValueError:
        return
    assert isinstance(who, Identity)
