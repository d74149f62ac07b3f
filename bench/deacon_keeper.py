"""Benchmark the Deacon keeper: crash-to-restart latency, idle CPU and memory, tmux calls.

Runs the real service (``gastown-units run deacon-keeper``) against a private tmux server and
the stand-in agent; prints figures, asserts nothing.

    python3 -m bench.deacon_keeper [--trials 5] [--interval 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from tests.harness import keeper
from tests.harness.poll import poll_until
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import control_agent, make_town


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--interval", default="2")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()
    server = PrivateTmux().start()
    with tempfile.TemporaryDirectory() as tmp:
        town = make_town(Path(tmp) / "town")
        proc = keeper.start("deacon-keeper", town, server.socket, "--degraded", "true",
                            "--interval", args.interval, "--debug")
        try:
            pid = poll_until(lambda: server.pane("hq-deacon"), timeout=60, what="deacon")[0]
            latencies = []
            for _ in range(args.trials):
                started = time.monotonic()
                control_agent(town / "deacon", "crash")
                pid = poll_until(lambda old=pid: (p := server.pane("hq-deacon")) and
                                 p[1] == "claude" and p[0] != old and p[0],
                                 timeout=60, interval=0.02, what="restart")
                latencies.append(time.monotonic() - started)
            service = psutil.Process(proc.pid)
            cpu0 = service.cpu_times()
            time.sleep(args.idle_seconds)  # measuring idle use: the wait is the measurement
            cpu1 = service.cpu_times()
            busy = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / args.idle_seconds
            rss = service.memory_info().rss / 2**20
        finally:
            _, out = keeper.stop(proc)
            server.stop()
    tmux_calls = sum(1 for line in out.splitlines() if "run: tmux" in line)
    print(f"crash-to-restart (poll interval {args.interval}s, {args.trials} trials): "
          f"median {statistics.median(latencies):.2f}s, min {min(latencies):.2f}s, "
          f"max {max(latencies):.2f}s")
    print(f"idle CPU: {busy * 100:.2f}% of one core; RSS {rss:.1f} MiB")
    print(f"tmux calls over the whole run ({args.trials} restarts, "
          f"{args.idle_seconds:g}s idle): {tmux_calls}")


if __name__ == "__main__":
    main()
