"""Wake on change, not on a clock (issue 12 item 1), against real tmux and the stand-ins.

Every service here runs with an interval of an hour: whatever it does after its first pass
was woken by a change of the town's files or beads stores, not by the clock. And a quiet
town costs no ``bd``/``gt`` call: what a pass reads through them is kept while the store
it comes from looks unchanged (the stand-ins log every call to ``.standin/calls.jsonl``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

from tests.harness import keeper
from tests.harness.poll import poll_until
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import bd
from tests.tmux.test_rig_services import RIG, standin

HOUR = ("--interval", "1h")
WITNESS = f"gt-{RIG}-witness"


def calls(town: Path, *words: str, since: float = 0.0) -> list[dict]:
    """The stand-ins' calls whose argv holds every one of ``words``, made after ``since``."""
    path = town / ".standin" / "calls.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r for r in rows if _epoch(r["ts"]) > since and all(w in r["argv"] for w in words)]


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _start(service: str, town: Path, server: PrivateTmux, *args: str,
           env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], Output]:
    """The service with ``--debug`` (its "pass over" lines mark the end of each pass)."""
    proc = keeper.start(service, town, server.socket, *args, "--debug", env=env)
    return proc, Output(proc)


def _witness(town: Path, server: PrivateTmux, *args: str
             ) -> tuple[subprocess.Popen[str], Output]:
    proc, out = _start("witness", town, server, "--rig", RIG, *args)
    poll_until(lambda: out.has("pass over:"), timeout=30, what="the first pass over")
    return proc, out


def _settled(out: Output, passes: int = 1) -> float:
    """The time after ``passes`` more passes ended (their reads are over)."""
    seen = out.count("pass over:")
    poll_until(lambda: out.count("pass over:") >= seen + passes, timeout=30,
               what=f"{passes} more pass(es)")
    return time.time()


class Output:
    """The lines a running service printed so far (read by a thread: its pipe blocks)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        self._thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._thread.start()

    def has(self, text: str) -> bool:
        return self.count(text) > 0

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))


def test_a_docked_rig_is_honoured_without_waiting_for_the_interval(
        town: Path, tmux_server: PrivateTmux) -> None:
    """``gt rig dock`` labels the rig bead only (no file of ours changes): the witness sees
    the store change within seconds, re-reads the bead and starts nothing more; a tmux
    event after that reuses the verdict (no bd call) and the Witness stays down."""
    # The rig bead lives in the rig's database (beads.md §7.6): bd routes the show there.
    bd(town, "create", f"--id=gt-rig-{RIG}", f"--title={RIG}", "--type=task", "--force",
       rig=RIG)
    proc, out = _witness(town, tmux_server, *HOUR)
    try:
        since = time.time()
        bd(town, "label", "add", f"gt-rig-{RIG}", "status:docked", rig=RIG)
        poll_until(lambda: out.has("is not operational (rig is docked"), timeout=30,
                   what="the witness woken by the store to say the rig is docked")
        read = len(calls(town, "show", f"gt-rig-{RIG}", since=since))
        assert read >= 1
        tmux_server.tmux("kill-session", "-t", WITNESS)
        passes = out.count("pass over: rig gastown not operational")
        proc.send_signal(signal.SIGUSR1)  # a pass now, as a tmux event would start one
        poll_until(lambda: out.count("pass over: rig gastown not operational") > passes,
                   timeout=30, what="a pass after the Witness died")
        assert len(calls(town, "show", f"gt-rig-{RIG}", since=since)) == read  # reused
    finally:
        code, _ = keeper.stop(proc)
    assert code == 0, "".join(out.lines)
    assert tmux_server.pane(WITNESS) is None, "started on a docked rig"


def test_mail_wakes_the_witness(town: Path, tmux_server: PrivateTmux) -> None:
    proc, _ = _witness(town, tmux_server, *HOUR)
    try:
        since = time.time()
        standin(town, "gt", "mail", "send", f"{RIG}/witness", "-s", "hello", "-m", "body")
        poll_until(lambda: [c for c in calls(town, "mail", "inbox", since=since)
                            if c["env"].get("GT_ROLE") == "witness"],
                   timeout=30, what="the witness reading its inbox after the mail came")
    finally:
        code, out = keeper.stop(proc)
    assert code == 0, out


def test_mail_wakes_lifecycle_mail(town: Path, tmux_server: PrivateTmux) -> None:
    proc, out = _start("lifecycle-mail", town, tmux_server, "--lifecycle-interval", "1h")
    try:
        poll_until(lambda: out.has("pass over:"), timeout=30, what="the first pass over")
        since = time.time()
        standin(town, "gt", "mail", "send", "deacon/", "-s", "hello", "-m", "body")
        poll_until(lambda: calls(town, "mail", "inbox", since=since), timeout=30,
                   what="lifecycle-mail reading the inbox after the mail came")
    finally:
        code, out = keeper.stop(proc)
    assert code == 0, out


def test_a_quiet_town_costs_no_bd_or_gt_call(town: Path, tmux_server: PrivateTmux) -> None:
    """Passes every 0.3 s for a while, and a tmux event: the rig bead and the inbox are
    read once, then reused while the stores look the same."""
    proc, out = _witness(town, tmux_server, "--interval", "0.3")
    try:
        since = _settled(out)
        tmux_server.tmux("kill-session", "-t", WITNESS)  # a restart needs no bd call either
        poll_until(lambda: tmux_server.pane(WITNESS), timeout=30, what="the Witness back")
        _settled(out, passes=5)
        assert calls(town, since=since) == [], "a quiet pass called bd or gt"
    finally:
        code, out = keeper.stop(proc)
    assert code == 0, out


def test_with_no_reuse_every_pass_reads(town: Path, tmux_server: PrivateTmux) -> None:
    """GT_FACT_MAX_AGE=0 is the old behaviour: the rig bead read every pass (the control
    for the test above: its silence is the cache's doing, not a lack of passes)."""
    proc = keeper.start("witness", town, tmux_server.socket, "--rig", RIG, "--interval", "0.3",
                        env={"GT_FACT_MAX_AGE": "0"})
    try:
        poll_until(lambda: len(calls(town, "show", f"gt-rig-{RIG}")) >= 5, timeout=30,
                   what="the rig bead read by several passes")
    finally:
        code, out = keeper.stop(proc)
    assert code == 0, out
