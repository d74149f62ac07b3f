"""polecat-health's bd cache on the event path (issue 12, item 2), against real tmux and the
stand-ins: no bd call while the stores are unchanged, a changed store is seen, a damaged
cache is no cache, and a zombie (whose pane is killed) is judged on fresh bd data."""

from __future__ import annotations

import json
from pathlib import Path

from tests.harness.poll import poll_until
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import agent_record, bd
from tests.tmux.test_polecat_health import NO_BACKOFF, RIG, crash, polecat, sweep

CACHE = Path("daemon/units/polecat-health-bd-cache.json")


def _calls(town: Path) -> list[dict]:
    path = town / ".standin" / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _bd_since(town: Path, mark: int) -> list[list[str]]:
    return [c["argv"] for c in _calls(town)[mark:] if c["tool"] == "bd"]


def _restarted(tree: Path, old: int) -> int:
    return poll_until(lambda: (r := agent_record(tree)) and r["pid"] != old and r["pid"],
                      timeout=30, what="the restarted agent")


def test_an_unchanged_store_restarts_without_any_bd_call(town: Path,
                                                         tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")
    crash(tmux_server, tree, "nux")
    first = sweep(town, tmux_server, *NO_BACKOFF)  # reads bd, mails, refreshes the cache
    assert first.returncode == 0, first.stderr
    pid = _restarted(tree, 0)
    crash(tmux_server, tree, "nux")
    mark = len(_calls(town))
    result = sweep(town, tmux_server, *NO_BACKOFF)
    assert result.returncode == 0, result.stderr
    assert "CRASH DETECTED: polecat gastown/nux" in result.stderr
    _restarted(tree, pid)
    assert _bd_since(town, mark) == [], result.stderr


def test_a_changed_store_is_seen(town: Path, tmux_server: PrivateTmux) -> None:
    """The work closed since the cache was written: the polecat stays down."""
    tree = polecat(town, tmux_server, "nux")
    assert sweep(town, tmux_server, *NO_BACKOFF).returncode == 0  # the cache, all running
    issue = json.loads(bd(town, "show", f"gt-{RIG}-polecat-nux", "--json"))[0]["hook_bead"]
    bd(town, "close", issue)
    crash(tmux_server, tree, "nux")
    mark = len(_calls(town))
    result = sweep(town, tmux_server, *NO_BACKOFF)
    assert result.returncode == 0, result.stderr
    assert f"hooked bead {issue} is closed: not restarted" in result.stderr
    assert f"gt-{RIG}-nux" not in tmux_server.sessions()
    assert any(argv[:1] == ["list"] for argv in _bd_since(town, mark))


def test_a_damaged_cache_file_is_no_cache(town: Path, tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")
    assert sweep(town, tmux_server, *NO_BACKOFF).returncode == 0
    assert (town / CACHE).exists()
    for damage in (b"{\"version\": 1, \"key\": ", b"\xff\xfe[]", b"[1, 2]"):
        (town / CACHE).write_bytes(damage)
        pid = agent_record(tree)["pid"]
        crash(tmux_server, tree, "nux")
        mark = len(_calls(town))
        result = sweep(town, tmux_server, *NO_BACKOFF)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        _restarted(tree, pid)
        assert any(argv[:1] == ["list"] for argv in _bd_since(town, mark))


def test_a_zombie_is_judged_on_fresh_bd_data(town: Path, tmux_server: PrivateTmux) -> None:
    """The cache is good (nothing changed), but killing a pane needs a fresh read."""
    tree = polecat(town, tmux_server, "nux")
    assert sweep(town, tmux_server, *NO_BACKOFF).returncode == 0  # the cache, work included
    issue = json.loads(bd(town, "show", f"gt-{RIG}-polecat-nux", "--json"))[0]["hook_bead"]
    session = f"gt-{RIG}-nux"
    tmux_server.tmux("kill-session", "-t", f"={session}")
    poll_until(lambda: session not in tmux_server.sessions(), timeout=10, what="no session")
    tmux_server.tmux("new-session", "-d", "-s", session, "-c", str(tree), "exec sh")
    shell, _ = poll_until(lambda: tmux_server.pane(session), timeout=10, what="a zombie")
    mark = len(_calls(town))
    result = sweep(town, tmux_server, *NO_BACKOFF)
    assert result.returncode == 0, result.stderr
    assert "is a zombie" in result.stderr, result.stderr
    asked = _bd_since(town, mark)
    assert any(argv[:2] == ["list", "--label=gt:agent"] for argv in asked), asked
    assert ["show", issue, "--json"] in asked, asked
    poll_until(lambda: (p := tmux_server.pane(session)) and p[0] != shell and p[1] == "claude",
               timeout=30, what="the restarted agent")
