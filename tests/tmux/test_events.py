"""Events and conditions against real tmux and the stand-ins: told once, not every pass."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

from gastown_units.cli import main
from gastown_units.runtime.events import BY_NAME
from tests.harness import keeper
from tests.harness.poll import poll_until
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import STANDINS
from tests.tmux.test_polecat_health import NO_BACKOFF, crash, mails, polecat, sweep

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
                            env=keeper.service_env({"GT_FACT_MAX_AGE": "0"}))  # bd every pass
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


def test_a_crash_loop_mails_mayor_once_across_runs_and_retries_a_failed_mail(
        town: Path, tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")
    args = (*NO_BACKOFF, "--crash-loop-restarts", "2")
    for _ in range(2):
        crash(tmux_server, tree, "nux")
        assert sweep(town, tmux_server, *args).returncode == 0
        poll_until(lambda: tmux_server.pane(f"gt-{RIG}-nux"), timeout=20, what="restart")
    crash(tmux_server, tree, "nux")
    (town / ".standin").mkdir(exist_ok=True)
    fail = town / ".standin" / "gt.fail"
    fail.write_text("mail server down")
    try:
        looped = sweep(town, tmux_server, *args)  # the loop begins; no mail gets through
        assert "CRASH LOOP" in looped.stderr and "could not mail mayor/" in looped.stderr
    finally:
        fail.unlink()
    assert mayor_loops(town) == []
    for _ in range(3):  # each sweep is a new run of the service: the incident persists
        assert sweep(town, tmux_server, *args).returncode == 0
    assert mayor_loops(town) == [f"CRASH_LOOP: {RIG}/nux restarts stopped"]
    assert f"gt-{RIG}-nux" not in tmux_server.sessions()


def mayor_loops(town: Path) -> list[str]:
    return [s for s in mails(town, "mayor/") if s.startswith("CRASH_LOOP")]


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_polecat_restart_carries_agent_role_and_rig(town: Path,
                                                      tmux_server: PrivateTmux) -> None:
    tree = polecat(town, tmux_server, "nux")
    crash(tmux_server, tree, "nux")
    argv = keeper.service_argv("polecat-health", town, tmux_server.socket, "--once")
    capture = Capture()
    ours = logging.getLogger("gastown_units")
    ours.addHandler(capture)
    saved = logging.getLogger().handlers[:], logging.getLogger().level
    try:
        code = main(argv[argv.index("run"):])
    finally:
        ours.removeHandler(capture)
        root = logging.getLogger()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert code == 0
    about = [r for r in capture.records if "gt-gastown-nux" in r.getMessage()]
    assert about, [r.getMessage() for r in capture.records]
    for record in about:
        fields = {k: vars(record).get(k) for k in ("GT_AGENT", "GT_ROLE", "GT_RIG")}
        assert fields == {"GT_AGENT": "gastown/nux", "GT_ROLE": "polecat", "GT_RIG": RIG}, \
            record.getMessage()
    restarted = [r for r in about if vars(r).get("GT_EVENT") == "agent-restarted"]
    assert len(restarted) == 1
    assert vars(restarted[0])["MESSAGE_ID"] == BY_NAME["agent-restarted"].message_id
    detected = [r for r in about if "CRASH DETECTED" in r.getMessage()]
    assert len(detected) == 1


def test_polecat_health_says_bd_failing_once_over_many_sweeps(town: Path,
                                                              tmux_server: PrivateTmux) -> None:
    polecat(town, tmux_server, "nux")
    (town / ".standin").mkdir(exist_ok=True)
    fail = town / ".standin" / "bd.fail"
    fail.write_text("database is locked")
    try:
        runs = [sweep(town, tmux_server) for _ in range(3)]  # three runs of the oneshot
    finally:
        fail.unlink()
    assert [r.returncode for r in runs] == [1, 1, 1]  # --once still fails each sweep
    said = "".join(r.stderr for r in runs)
    assert said.count("bd failed, no polecat is restarted") == 1, said
    back = [sweep(town, tmux_server) for _ in range(2)]
    told = "".join(r.stderr for r in back)
    assert told.count("bd works again") == 1, told
    assert all(r.returncode == 0 for r in back)
