"""Hostile values in a town (issue 9): one bad rig or bead never blocks the others, and no
value from data reaches ``bd`` as an option."""

from __future__ import annotations

import json
from pathlib import Path

from tests.harness.poll import poll_until
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import agent_record, bd, make_town
from tests.tmux.test_polecat_health import NO_BACKOFF, crash, polecat, sweep

RIG = "gastown"


def bd_argvs(town: Path) -> list[list[str]]:
    path = town / ".standin" / "calls.jsonl"
    return [r["argv"] for r in map(json.loads, path.read_text().splitlines())
            if r["tool"] == "bd"]


def test_a_hostile_prefix_leaves_its_rig_out_and_sweeps_the_others(
        tmp_path: Path, tmux_server: PrivateTmux) -> None:
    town = make_town(tmp_path / "town", rigs={RIG: "gt", "evil": "ev"})
    routes = town / ".beads" / "routes.jsonl"
    routes.write_text(routes.read_text().replace('"ev-"', '"--db=/tmp/evil-"'))
    tree = polecat(town, tmux_server, "nux")
    first = agent_record(tree)["pid"]
    crash(tmux_server, tree, "nux")
    result = sweep(town, tmux_server, *NO_BACKOFF)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "rig evil" in result.stderr and "invalid bead prefix" in result.stderr
    poll_until(lambda: (r := agent_record(tree)) and r["pid"] != first, timeout=30,
               what="the good rig's polecat restarted")
    assert not any(a.startswith("--db") for argv in bd_argvs(town) for a in argv)


def test_a_hostile_hook_is_reported_not_restarted_and_blocks_no_other(
        town: Path, tmux_server: PrivateTmux) -> None:
    trees = {n: polecat(town, tmux_server, n) for n in ("nux", "bad")}
    bd(town, "slot", "clear", f"gt-{RIG}-polecat-bad", "hook", rig=RIG)
    store = town / RIG / "mayor" / "rig" / ".beads" / "issues.jsonl"
    rows = [json.loads(line) for line in store.read_text().splitlines()]
    for row in rows:
        if row["id"] == f"gt-{RIG}-polecat-bad":
            row["hook_bead"] = "--upload-pack=touch /tmp/owned"
    store.write_text("".join(json.dumps(r) + "\n" for r in rows))
    first = {n: agent_record(t)["pid"] for n, t in trees.items()}
    for name, tree in trees.items():
        crash(tmux_server, tree, name)
    result = sweep(town, tmux_server, *NO_BACKOFF)
    assert "Traceback" not in result.stderr
    poll_until(lambda: (r := agent_record(trees["nux"])) and r["pid"] != first["nux"],
               timeout=30, what="nux restarted")
    assert f"gt-{RIG}-bad" not in tmux_server.sessions()
    assert not any("--upload-pack" in a for argv in bd_argvs(town) for a in argv)
    assert not Path("/tmp/owned").exists()
