"""External calls and time of one polecat-health sweep at N rigs x M polecats.

    python3 -m bench.sweep_calls [--rigs 1 5 20] [--polecats 5 20]

Builds a town with stand-in bd/gt, one live tmux session per polecat (the stand-in agent),
runs ``gastown-units run polecat-health --once --debug`` and counts the calls it made.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tests.harness import keeper
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import make_town


def measure(rigs: int, polecats: int) -> tuple[int, int, int, float]:
    server = PrivateTmux().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            town = make_town(Path(tmp) / "town",
                             rigs={f"rig{r}": f"r{r}" for r in range(rigs)})
            for r in range(rigs):
                for p in range(polecats):
                    (town / f"rig{r}" / "polecats" / f"p{p}").mkdir()
                    server.tmux("new-session", "-d", "-s", f"gt-rig{r}-p{p}", "sleep 600")
            started = time.monotonic()
            result = keeper.run_once("polecat-health", town, server.socket, "--debug")
            elapsed = time.monotonic() - started
            if result.returncode != 0:
                sys.exit(result.stderr)
            tmux = result.stderr.count("run: tmux")
            calls = [json.loads(line) for line in
                     (town / ".standin" / "calls.jsonl").read_text().splitlines()]
            bd = sum(1 for c in calls if c["tool"] == "bd")
            gt = sum(1 for c in calls if c["tool"] == "gt")
            return tmux, bd, gt, elapsed
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rigs", type=int, nargs="+", default=[1, 5, 20])
    parser.add_argument("--polecats", type=int, nargs="+", default=[5, 20])
    args = parser.parse_args()
    print(f"{'rigs':>5} {'polecats':>9} {'tmux':>5} {'bd':>4} {'gt':>4} {'seconds':>8}")
    for rigs in args.rigs:
        for polecats in args.polecats:
            tmux, bd, gt, elapsed = measure(rigs, polecats)
            print(f"{rigs:>5} {rigs * polecats:>9} {tmux:>5} {bd:>4} {gt:>4} {elapsed:>8.2f}")


if __name__ == "__main__":
    main()
