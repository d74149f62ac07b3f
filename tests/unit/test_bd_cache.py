"""The polecat sweep's bd cache: keyed by the stores' signature, bounded in age, and a
damaged file is no cache."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gastown_units.ports.beads import AgentBead
from gastown_units.services import bd_cache
from gastown_units.services.bd_cache import BdReads

AGE = 300.0  # GT_FACT_MAX_AGE
SIG = (("/t/.beads/issues.jsonl", 1, 10, 100),)
AGENT = AgentBead("gt-r-polecat-nux", "gt-abc", "working", "2026-01-01T00:00:00Z", "open",
                  ("gt:agent",), hook_column="gt-abc")


def _reads() -> BdReads:
    reads = BdReads({AGENT.id: AGENT}, {"gt-rig-r": {"id": "gt-rig-r", "labels": []}})
    reads.add_hooked(["gt-abc", "gt-gone"], {"gt-abc": {"id": "gt-abc", "status": "hooked",
                                                       "description": "long"}})
    return reads


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    key = bd_cache.digest(SIG, "k")
    bd_cache.save(path, key, _reads())
    got = bd_cache.load(path, key, AGE)
    assert got is not None and got.cached and not got.dirty
    assert got.agents == {AGENT.id: AGENT}
    assert got.rig_beads == {"gt-rig-r": {"id": "gt-rig-r", "labels": []}}
    assert got.hooked == {"gt-abc": {"id": "gt-abc", "status": "hooked"}}  # status only
    assert got.known(["gt-abc", "gt-gone"]) and not got.known(["gt-new"])


def test_another_signature_or_question_is_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    bd_cache.save(path, bd_cache.digest(SIG, "k"), _reads())
    changed = (("/t/.beads/issues.jsonl", 1, 11, 101),)
    assert bd_cache.load(path, bd_cache.digest(changed, "k"), AGE) is None
    assert bd_cache.load(path, bd_cache.digest(SIG, "other rigs"), AGE) is None


def test_no_signature_no_cache(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    assert bd_cache.digest(None, "k") is None
    bd_cache.save(path, None, _reads())
    assert not path.exists()
    assert bd_cache.load(path, None, AGE) is None


def test_an_old_entry_is_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    key = bd_cache.digest(SIG, "k")
    reads = _reads()
    reads.read_at = time.time() - AGE - 1
    bd_cache.save(path, key, reads)
    assert bd_cache.load(path, key, AGE) is None
    reads = _reads()
    reads.read_at = time.time() + 60  # from the future: a clock jump, not trusted
    bd_cache.save(path, key, reads)
    assert bd_cache.load(path, key, AGE) is None


@pytest.mark.parametrize("damage", [
    b"", b"{", b"\xff\xfe", b"[]", b"null", b'{"version": 1}',
    b'{"version": 1, "key": "K", "read_at": "soon", "agents": {}, "rig_beads": {}, '
    b'"hooked": {}, "asked": []}',
    b'{"version": 1, "key": "K", "read_at": NOW, "agents": {"a": 1}, "rig_beads": {}, '
    b'"hooked": {}, "asked": []}',
    b'{"version": 1, "key": "K", "read_at": NOW, "agents": {"a": {"id": 1}}, '
    b'"rig_beads": {}, "hooked": {}, "asked": []}',
    b'{"version": 1, "key": "K", "read_at": NOW, "agents": [], "rig_beads": {}, '
    b'"hooked": {}, "asked": []}',
    b'{"version": 1, "key": "K", "read_at": NaN, "agents": {}, "rig_beads": {}, '
    b'"hooked": {}, "asked": []}',
])
def test_a_damaged_file_is_no_cache(tmp_path: Path, damage: bytes) -> None:
    path = tmp_path / "cache.json"
    key = bd_cache.digest(SIG, "k")
    assert key is not None
    path.write_bytes(damage.replace(b"K", key.encode()).replace(
        b"NOW", str(time.time()).encode()))
    assert bd_cache.load(path, key, AGE) is None


def test_a_directory_in_its_place_is_no_cache(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    path.mkdir()
    key = bd_cache.digest(SIG, "k")
    assert bd_cache.load(path, key, AGE) is None
    bd_cache.save(path, key, _reads())  # logged, not raised


def test_only_new_reads_are_written(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    key = bd_cache.digest(SIG, "k")
    bd_cache.save(path, key, _reads())
    got = bd_cache.load(path, key, AGE)
    assert got is not None
    path.unlink()
    bd_cache.save(path, key, got)  # nothing new: not rewritten
    assert not path.exists()
    got.add_hooked(["gt-new"], {})
    bd_cache.save(path, key, got)
    assert json.loads(path.read_text())["asked"] == ["gt-abc", "gt-gone", "gt-new"]
