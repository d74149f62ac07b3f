"""A town the size people run (issue 8): 60 polecats in two rig databases, all restarted.

Polecat agent beads live in their rig's database (beads.md §7.6), which a ``bd list`` from
the town root never reaches, and ``bd list`` stops at 50 by default (§5.2). The sweep must
see all 60 anyway, with a constant number of ``bd`` calls.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from tests.harness import keeper
from tests.harness.gitrig import add_polecat, make_rig_repos
from tests.harness.poll import poll_until, wait_gone
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import AGENT, agent_record, hook_work, make_town

RIGS = {"gastown": ("gt", 52), "beads": ("bd", 8)}  # 52: past list's default limit of 50


def _calls(town: Path) -> list[dict]:
    path = town / ".standin" / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []



def test_sixty_polecats_across_two_rig_databases_all_come_back(
        tmp_path: Path, tmux_server: PrivateTmux) -> None:
    town = make_town(tmp_path / "town", rigs={rig: p for rig, (p, _) in RIGS.items()})
    trees: dict[str, Path] = {}
    for rig, (prefix, count) in RIGS.items():
        make_rig_repos(town / rig)
        for n in range(count):
            name = f"p{n:02d}"
            # [J] session names are gt-<rig>-<name> whatever the rig's bead prefix (§3.1)
            trees[f"gt-{rig}-{name}"] = tree = add_polecat(town / rig, rig, name)
            hook_work(town, rig, name, prefix=prefix)
            tmux_server.tmux("new-session", "-d", "-s", f"gt-{rig}-{name}", "-c",
                             str(tree), f"exec {sys.executable} {AGENT}")
    assert len(trees) == 60
    before = poll_until(lambda: (r := {s: agent_record(t) for s, t in trees.items()})
                        and all(r.values()) and r, timeout=120, what="60 polecats up")
    for record in before.values():  # a mass kill: every agent at once
        os.kill(record["pid"], signal.SIGKILL)
    for record in before.values():
        wait_gone(record["pid"])
    poll_until(lambda: not tmux_server.sessions(), timeout=60, what="every session gone")
    rows_before = len(_calls(town))
    result = keeper.run_once("polecat-health", town, tmux_server.socket,
                             "--restart-backoff", "0", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert tmux_server.sessions() == set(trees)
    after = poll_until(lambda: (r := {s: agent_record(t) for s, t in trees.items()})
                       and all(r[s]["pid"] != before[s]["pid"] for s in r) and r,
                       timeout=120, what="60 polecats restarted")
    assert all(tmux_server.pane(s)[0] == after[s]["pid"] for s in trees)
    made = _calls(town)[rows_before:]
    mailed = next(i for i, c in enumerate(made) if c["tool"] == "gt" and c["argv"][0] == "mail")
    lists = [c["argv"] for c in made[:mailed] if c["tool"] == "bd" and c["argv"][:1] == ["list"]]
    assert len(lists) == 4, lists  # two forms per rig database, however many polecats
    # The sweep's mail changed the town's store: before it exits, the oneshot reads the
    # agents once more for the next event's cache (the same four lists).
    again = [c["argv"] for c in made[mailed:] if c["tool"] == "bd" and c["argv"][:1] == ["list"]]
    assert len(again) == 4, again
    assert all("--limit" in argv and argv[argv.index("--limit") + 1] == "0" for argv in lists)
