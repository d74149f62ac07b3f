"""The town lock that follows its file, and the town-down mark (gastown-2026.md §6.11,
§8 rows 8-10)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gastown_units.errors import LockConflict
from gastown_units.ports.locks import TownLock, flock_holders, shutting_down_pid
from gastown_units.town.layout import Town
from gastown_units.town.town_down import clear_down, down_path, read_down, write_down
from tests.harness.town import make_town


def test_lock_still_ours_is_not_an_event(tmp_path: Path) -> None:
    with TownLock(tmp_path / "daemon.lock") as lock:
        assert lock.check() is None
        assert flock_holders(lock.path, "READ") == [os.getpid()]


def test_unlinked_lock_is_retaken_on_a_new_file_gastown_2026_8_8(tmp_path: Path) -> None:
    path = tmp_path / "daemon.lock"
    with TownLock(path) as lock:
        path.unlink()
        assert lock.check() == "unlinked"
        assert path.exists() and flock_holders(path, "READ") == [os.getpid()]
        assert lock.check() is None
        fd = os.open(path, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def test_replaced_lock_is_retaken_gastown_2026_8_8(tmp_path: Path) -> None:
    path = tmp_path / "daemon.lock"
    with TownLock(path) as lock:
        fresh = tmp_path / "new"
        fresh.touch()
        os.replace(fresh, path)
        assert lock.check() == "replaced"
        assert flock_holders(path, "READ") == [os.getpid()]


def test_replaced_lock_held_exclusively_is_a_lock_conflict(tmp_path: Path) -> None:
    path = tmp_path / "daemon.lock"
    with TownLock(path) as lock:
        fresh = tmp_path / "new"
        fd = os.open(fresh, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.replace(fresh, path)
            with pytest.raises(LockConflict, match="was replaced, and a `gt daemon` now"):
                lock.check()
            assert not lock.held
        finally:
            os.close(fd)


def test_shutting_down_pid_live_stale_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "shutting-down"
    assert shutting_down_pid(path) is None
    path.write_text(str(os.getpid()))
    assert shutting_down_pid(path) == os.getpid()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path.write_text(str(dead.pid))
    assert shutting_down_pid(path) is None
    for text in ("", "-1", "0", "12x", "9" * 40):
        path.write_text(text)
        assert shutting_down_pid(path) is None


def test_mark_written_once_read_and_cleared(tmp_path: Path) -> None:
    town = Town.open(make_town(tmp_path / "town"))
    assert read_down(town) is None
    first = write_down(town, "gt down holds daemon/shutdown.lock", "deacon-keeper")
    again = write_down(town, "daemon/daemon.lock was unlinked", "witness")
    assert (again.reason, again.by) == (first.reason, first.by)  # the first cause is told
    assert abs(again.at - first.at) < 1e-3
    mark = read_down(town)
    assert mark is not None and mark.reason == "gt down holds daemon/shutdown.lock"
    assert abs(mark.at - first.at) < 1e-3
    assert mark.status().startswith("town down since ")
    assert "gastown-units resume" in mark.status() and "gt up" in mark.status()
    data = json.loads(down_path(town).read_text())
    assert set(data) == {"at", "reason", "by", "resume"}
    assert down_path(town).stat().st_mode & 0o777 == 0o644
    assert clear_down(town) and not clear_down(town)
    assert read_down(town) is None


def test_damaged_mark_holds(tmp_path: Path) -> None:
    town = Town.open(make_town(tmp_path / "town"))
    down_path(town).parent.mkdir(parents=True, exist_ok=True)
    for text in ("{not json", "[]", '{"reason": "x"}'):
        down_path(town).write_text(text)
        mark = read_down(town)
        assert mark is not None and not mark.readable
        assert "gastown-units resume" in mark.status()


def test_resume_command(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    from gastown_units.cli import main

    monkeypatch.setenv("GT_CONFIG", "")
    root = make_town(tmp_path / "town")
    town = Town.open(root)
    assert main(["resume", "--town", str(root)]) == 0
    assert "not marked down" in capsys.readouterr().out
    write_down(town, "gt down holds daemon/shutdown.lock", "deacon-keeper")
    fd = os.open(town.shutdown_lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert main(["resume", "--town", str(root)]) == 1  # gt down still runs
        assert "gt down is still running" in capsys.readouterr().err
        assert read_down(town) is not None
    finally:
        os.close(fd)
    assert main(["resume", "--town", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("town resumed (it was down since ")
    assert "(0 service(s) woken)" in out
    assert read_down(town) is None


def test_resume_if_configured_without_a_town(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    from gastown_units.cli import main

    monkeypatch.setenv("GT_CONFIG", "")
    monkeypatch.delenv("GT_TOWN_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["resume", "--if-configured"]) == 0
    assert "no town configured" in capsys.readouterr().out
