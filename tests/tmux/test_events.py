"""Events and conditions against real tmux and the stand-ins: told once, not every pass."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.harness import keeper
from tests.harness.poll import poll_until
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import STANDINS

RIG = "gastown"


def calls(town: Path, tool: str) -> list[dict]:
    path = town / ".standin" / "calls.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r for r in rows if r["tool"] == tool]


def test_witness_says_gt_missing_once_and_resolved_once(town: Path, tmp_path: Path,
                                                        tmux_server: PrivateTmux) -> None:
    gt = tmp_path / "bin" / "gt"
    gt.parent.mkdir()
    argv = keeper.service_argv("witness", town, tmux_server.socket, "--rig", RIG,
                               "--interval", "0.2")
    argv[argv.index("--gt-bin") + 1] = str(gt)
    proc = subprocess.Popen(argv, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=keeper.service_env())
    try:
        poll_until(lambda: len(calls(town, "bd")) >= 12, timeout=60, what="several passes")
        os.symlink(STANDINS / "gt", gt)
        poll_until(lambda: calls(town, "gt"), timeout=60, what="gt called")
        seen = len(calls(town, "bd"))
        poll_until(lambda: len(calls(town, "bd")) >= seen + 8, timeout=60, what="more passes")
    finally:
        code, out = keeper.stop(proc)
    assert code == 0, out
    assert out.count("cannot read the witness inbox") == 1, out
    assert out.count("the witness inbox is readable again") == 1, out
