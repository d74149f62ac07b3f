"""The dialect detector, the [L] socket and the two spellings of one identity table
(gastown-2026.md §0, §3.0, §3.1, §3.3, §4.1)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gastown_units.config import Settings
from gastown_units.ports import dialect_probe
from gastown_units.town.dialect import (
    Dialect,
    Evidence,
    detect,
    parse_gt_version,
    socket_name,
    version_dialect,
)
from gastown_units.town.identity import (
    BOOT,
    DEACON,
    Identity,
    IdentityParser,
    Naming,
    Role,
)
from gastown_units.town.layout import Town
from gastown_units.town.rigs import load_rigs

L = Naming.of(Dialect.L, {"gastown": "gt", "stockdrop": "st", "ff": "ff", "gt2": "gt-2"})


# --- §0.1 versions --------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "dialect"), [
    ("gt version 0.5.0 (dev: main@cdcde82cd1a2)", Dialect.J),
    ("gt version v0.5.0-68-gcdcde82c", Dialect.J),
    ("gt version 0.6.0", Dialect.UNKNOWN),
    ("gt version 0.12.1 (release)", Dialect.UNKNOWN),
    ("gt version 0.13.0", Dialect.L),
    ("gt version 1.2.1-304-g649b832b (dev: main@649b832b1234)", Dialect.L),
])
def test_versions_map_to_dialects_as_the_release_table_says(text: str, dialect: Dialect
                                                           ) -> None:
    version = parse_gt_version(text)
    assert version is not None
    assert version_dialect(version) is dialect
    assert detect(Evidence(gt_version=text)).dialect is dialect


def test_an_intermediate_release_is_refused_with_its_reason() -> None:
    verdict = detect(Evidence(gt_version="gt version 0.9.0 (dev: main@abc)"))
    assert verdict.dialect is Dialect.UNKNOWN
    assert "0.9.0" in verdict.describe() and "0.6-0.12" in verdict.describe()


def test_no_marker_is_j_and_any_l_marker_is_l() -> None:
    assert detect(Evidence()).dialect is Dialect.J
    assert detect(Evidence(l_files=("rigs.json",))).dialect is Dialect.L
    assert detect(Evidence(l_socket_sessions=("hq-deacon",))).dialect is Dialect.L
    verdict = detect(Evidence(gt_version="gt version 0.5.0",
                              default_sessions=("gt-gastown-witness",)))
    assert verdict.dialect is Dialect.J and "default tmux server" in verdict.describe()


def test_mixed_evidence_is_unknown_and_names_both_sides() -> None:
    verdict = detect(Evidence(gt_version="gt version 1.2.1",
                              default_sessions=("gt-gastown-witness",)))
    assert verdict.dialect is Dialect.UNKNOWN
    text = verdict.describe()
    assert "mixed" in text and "gt 1.2.1" in text and "gt-gastown-witness" in text
    old_binary_new_town = detect(Evidence(gt_version="gt version 0.5.0",
                                          l_files=("rigs.json", "events")))
    assert old_binary_new_town.dialect is Dialect.UNKNOWN


def test_the_operator_override_wins() -> None:
    verdict = detect(Evidence(gt_version="gt version 0.9.0"), Dialect.L)
    assert verdict.dialect is Dialect.L and "GT_DIALECT=l" in verdict.describe()


# --- §3.0 socket -----------------------------------------------------------------------------
def test_socket_worked_examples_and_override_of_gastown_2026_3_0() -> None:
    assert socket_name("/home/u/gt", canonical="/home/u/gt") == "gt-56fe62"
    assert socket_name("/home/alice/My Town.v2",
                       canonical="/home/alice/My Town.v2") == "my-town-v2-e9606e"
    assert socket_name("/home/u/gt", "default", canonical="/home/u/gt") == "gt-56fe62"
    assert socket_name("/home/u/gt", "auto", canonical="/home/u/gt") == "gt-56fe62"
    assert socket_name("/home/u/gt", "mine") == "mine"


def test_socket_hash_is_of_the_resolved_path_base_of_the_given_one(tmp_path: Path) -> None:
    real = tmp_path / "real-town"
    real.mkdir()
    link = tmp_path / "Link"
    link.symlink_to(real)
    via_link, direct = socket_name(str(link)), socket_name(str(real))
    assert via_link.startswith("link-") and direct.startswith("real-town-")
    assert via_link[-6:] == direct[-6:]


# --- §3.1 / §3.3 / §4.1 renderings -----------------------------------------------------------
def test_l_session_names_by_prefix_of_gastown_2026_3_1() -> None:
    assert Identity(Role.WITNESS, "gastown").in_town(L).session == "gt-witness"
    assert Identity(Role.REFINERY, "stockdrop").in_town(L).session == "st-refinery"
    assert Identity(Role.POLECAT, "stockdrop", "nux").in_town(L).session == "st-nux"
    assert Identity(Role.CREW, "ff", "max").in_town(L).session == "ff-crew-max"
    assert BOOT.in_town(L).session == "hq-boot" and BOOT.session == "gt-boot"
    assert DEACON.in_town(L).session == "hq-deacon"
    assert Identity(Role.WITNESS, "unregistered").in_town(L).session == "gt-witness"
    assert Identity(Role.WITNESS, "gastown").session == "gt-gastown-witness"  # [J]


def test_the_longest_registered_prefix_wins_and_both_spellings_are_one_agent() -> None:
    parser = IdentityParser(rigs=["gastown", "stockdrop", "ff", "gt2"],
                            prefixes={"gastown": "gt", "stockdrop": "st"}, naming=L)
    assert parser.parse("gt-2-witness") == Identity(Role.WITNESS, "gt2")
    assert parser.parse("gt-witness") == Identity(Role.WITNESS, "gastown")
    assert parser.parse("gt-nux-2") == Identity(Role.POLECAT, "gastown", "nux-2")
    assert parser.parse("ff-crew-max") == Identity(Role.CREW, "ff", "max")
    assert parser.parse("hq-boot") == BOOT
    assert parser.parse("gt-gastown-witness") == Identity(Role.WITNESS, "gastown")
    assert parser.parse("gt-witness").session == "gt-witness"  # spelt the town's way
    with pytest.raises(ValueError):
        parser.parse("zz-nux")  # unregistered prefixes never match


def test_compound_role_and_l_env_of_gastown_2026_3_3(tmp_path: Path) -> None:
    town = Town(tmp_path)
    nux = Identity(Role.POLECAT, "gastown", "nux").in_town(L)
    env = nux.env(town)
    assert env["GT_ROLE"] == "gastown/polecats/nux"
    assert env["GT_SESSION"] == "gt-nux" and env["BEADS_DIR"] == ""
    assert "BEADS_NO_DAEMON" not in env
    assert BOOT.in_town(L).env(town)["GT_ROLE"] == "deacon/boot"
    assert Identity(Role.WITNESS, "gastown").in_town(L).role_name == "gastown/witness"
    j_env = Identity(Role.POLECAT, "gastown", "nux").env(town)
    assert j_env["GT_ROLE"] == "polecat" and j_env["BEADS_NO_DAEMON"] == "1"
    assert "GT_SESSION" not in j_env


def test_bead_id_drops_the_rig_when_prefix_is_the_rig_of_gastown_2026_4_1() -> None:
    assert Identity(Role.POLECAT, "ff", "nux").in_town(L).bead_id("ff") == "ff-polecat-nux"
    assert Identity(Role.WITNESS, "ff").in_town(L).bead_id("ff") == "ff-witness"
    assert Identity(Role.POLECAT, "ff", "nux").bead_id("ff") == "ff-ff-polecat-nux"  # [J]


# --- the probe -------------------------------------------------------------------------------
def _town(tmp_path: Path) -> Town:
    root = tmp_path / "town"
    (root / "mayor").mkdir(parents=True)
    (root / "mayor" / "town.json").write_text('{"type":"town","version":2,"name":"t"}')
    (root / "mayor" / "rigs.json").write_text(json.dumps(
        {"version": 1, "rigs": {"gastown": {"beads": {"prefix": "gt"}}}}))
    return Town.open(root)


def test_the_l_files_of_gastown_2026_0_2_are_markers(tmp_path: Path) -> None:
    town = _town(tmp_path)
    assert dialect_probe.l_files(town) == ()
    (town.root / ".runtime").mkdir()  # [J] has .runtime too: not a marker
    (town.daemon_dir).mkdir()
    (town.daemon_dir / "restart_state.json").write_text("{}")  # ours too: not a marker
    (town.daemon_dir / "daemon.pid").write_text("4242\n")  # legacy one-line
    assert dialect_probe.l_files(town) == ()
    (town.daemon_dir / "daemon.pid").write_text("4242\n0123456789abcdef")
    (town.root / "rigs.json").write_text("{}")
    (town.root / "mayor" / "daemon.json").write_text(
        '{"type":"daemon-patrol-config","version":1,"patrols":{"wisp_reaper":{}}}')
    found = dialect_probe.l_files(town)
    assert "rigs.json" in found and "daemon/daemon.pid with a nonce" in found
    assert "mayor/daemon.json with [L] patrols" in found


def test_session_names_vote_by_their_spelling(tmp_path: Path) -> None:
    rigs = load_rigs(_town(tmp_path))
    j, el = dialect_probe.classify_names(
        ["gt-boot", "gt-gastown-witness", "hq-deacon", "gt-witness", "hq-dog-alpha",
         "gt-nux"], rigs)
    assert j == ("gt-boot", "gt-gastown-witness")
    assert el == ("gt-witness", "hq-dog-alpha")


def test_the_town_socket_is_found_by_its_hash_suffix(tmp_path: Path) -> None:
    town = _town(tmp_path)
    sockets = tmp_path / "tmp" / "tmux-4242"
    sockets.mkdir(parents=True)
    derived = socket_name(str(town.root))
    (sockets / f"other-{derived[-6:]}").touch()
    (sockets / "unrelated-abcdef").touch()
    env = {"TMUX_TMPDIR": str(tmp_path / "tmp")}
    assert dialect_probe.town_sockets(town, env, 4242) == [f"other-{derived[-6:]}"]
    assert dialect_probe.tmux_socket(town, Dialect.L, None, env, 4242) == \
        f"other-{derived[-6:]}"
    (sockets / derived).touch()
    assert dialect_probe.tmux_socket(town, Dialect.L, None, env, 4242) == derived
    assert dialect_probe.tmux_socket(town, Dialect.L, "given", env, 4242) == "given"
    assert dialect_probe.tmux_socket(town, Dialect.J, None, env, 4242) is None


def test_gt_version_is_cached_per_binary(tmp_path: Path) -> None:
    town = _town(tmp_path)
    gt = tmp_path / "gt"
    calls = tmp_path / "calls"
    gt.write_text(f"#!/bin/sh\necho x >> {calls}\necho 'gt version 1.2.1 (dev)'\n")
    gt.chmod(0o755)
    cache = tmp_path / "cache.json"
    assert dialect_probe.gt_version(town, str(gt), 5.0, cache) == "gt version 1.2.1 (dev)"
    assert dialect_probe.gt_version(town, str(gt), 5.0, cache) == "gt version 1.2.1 (dev)"
    assert calls.read_text().count("x") == 1
    gt.write_text(f"#!/bin/sh\necho x >> {calls}\necho 'gt version 0.5.0'\n")  # upgraded
    os.utime(gt, ns=(1, 1))
    assert dialect_probe.gt_version(town, str(gt), 5.0, cache) == "gt version 0.5.0"
    assert dialect_probe.gt_version(town, str(tmp_path / "missing"), 5.0, cache) is None


def test_resolve_without_evidence_is_j_on_the_configured_socket(tmp_path: Path) -> None:
    town = _town(tmp_path)
    settings = Settings(gt_bin=str(tmp_path / "no-gt"), tmux_socket="mine")
    found = dialect_probe.resolve(town, load_rigs(town), settings,
                                  environ={"TMUX_TMPDIR": str(tmp_path)})
    assert found.verdict.dialect is Dialect.J and found.socket == "mine"
    forced = dialect_probe.resolve(town, load_rigs(town), settings.replace(dialect="l",
                                                                           tmux_socket=None))
    assert forced.verdict.dialect is Dialect.L
    assert forced.socket == socket_name(str(town.root))
    assert forced.naming.prefix("gastown") == "gt"


def test_gt_version_finds_gt_where_the_units_do(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``status``/``doctor`` as root: gt is on the units' configured PATH only."""
    town = _town(tmp_path)
    tools = tmp_path / "owner-bin"
    tools.mkdir()
    gt = tools / "gt"
    gt.write_text("#!/bin/sh\necho 'gt version 0.9.0 (dev)'\n")
    gt.chmod(0o755)
    conf = tmp_path / "gastown.conf"
    conf.write_text(f"PATH={tools}:/usr/bin:/bin\n")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("GT_CONFIG", str(conf))
    assert dialect_probe.gt_version(town, "gt", 5.0, None) == "gt version 0.9.0 (dev)"
    monkeypatch.setenv("GT_CONFIG", "")  # no configured PATH: not found there
    assert dialect_probe.gt_version(town, "gt", 5.0, None) != "gt version 0.9.0 (dev)"
