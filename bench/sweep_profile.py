"""Where the time of one crash → running goes on the event path (issue 12, item 2).

    python3 -m bench.sweep_profile [--trials 10] [--pyc]

Builds a test town (stand-in bd/gt/agent, one polecat with hooked work on a private tmux
server), then per trial: the polecat's agent crashes, its session closes, and at t0 a
``gastown-units run polecat-health --once`` starts as the .path unit would start it. The
child process times every external call (``runner.run``) against t0; the latency is the new
agent's ``exec_at`` (its first instruction) minus t0 (the systemd start and the hook's
``run-shell`` are not in it). ``--pyc`` lets the child use byte-compiled modules (as the
installed package does; this environment may set PYTHONDONTWRITEBYTECODE). Prints figures,
asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CHILD = "--child"


def _caller() -> str:
    """The innermost frames of ours that led to an external call (``--where``)."""
    import traceback

    ours = [f"{Path(f.filename).stem}:{f.name}" for f in traceback.extract_stack()
            if "gastown_units" in f.filename and "/ports/" not in f.filename]
    return " < ".join(reversed(ours[-3:]))


def _child(out: str, t0: float, argv: list[str]) -> None:
    """Run the CLI with every ``runner.run`` timed; written to ``out`` at exit."""
    import atexit

    started = time.time()
    from gastown_units.ports import runner

    calls: list[dict[str, Any]] = []
    real = runner.run

    def timed(args: Sequence[str], **kw: Any) -> runner.Result:
        begin = time.time()
        try:
            return real(args, **kw)
        finally:
            calls.append({"at": begin - t0, "took": time.time() - begin,
                          "argv": [os.path.basename(args[0]), *args[1:6]],
                          "where": _caller()})

    runner.run = timed  # type: ignore[assignment]

    def dump() -> None:
        Path(out).write_text(json.dumps({"start": started - t0, "calls": calls,
                                         "end": time.time() - t0}))

    atexit.register(dump)
    profile_to = os.environ.pop("GTU_BENCH_CPROFILE", "")
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        atexit.register(lambda: profiler.dump_stats(profile_to))
        profiler.enable()
    from gastown_units.launch import main

    sys.exit(main(argv))


def _as_unit(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """The test harness's command line as the unit runs it: ``run polecat-health --once``
    with every option moved to its knob's environment variable (the unit's
    EnvironmentFile=), so that the child takes the sweep's fast start."""
    from gastown_units.config import KNOBS

    env_of = {"--" + k.field.replace("_", "-"): k.env for k in KNOBS}
    env_of["--town"] = "GT_TOWN_ROOT"
    kept: list[str] = []
    env: dict[str, str] = {}
    args = iter(argv)
    for arg in args:
        if arg in env_of:
            env[env_of[arg]] = next(args)
        else:
            kept.append(arg)
    return kept, env


def _trial(town: Path, server: Any, tree: Path, out: Path, env: dict[str, str]
           ) -> tuple[float, dict[str, Any]]:
    from gastown_units.town.jsonfile import parse_time
    from tests.harness import keeper
    from tests.harness.town import agent_record
    from tests.tmux.test_polecat_health import crash

    before = agent_record(tree)
    crash(server, tree, "nux")
    argv = keeper.service_argv("polecat-health", town, server.socket, "--once",
                               "--restart-backoff", "0", "--crash-loop-restarts", "1000")[3:]
    argv, knob_env = _as_unit(argv)
    t0 = time.time()
    res = subprocess.run([sys.executable, "-m", "bench.sweep_profile", CHILD, str(out),
                          repr(t0), *argv], env={**env, **knob_env}, capture_output=True,
                         text=True, timeout=120, check=False)
    record = agent_record(tree)
    if record is None or before is None or record["pid"] == before["pid"]:
        sys.exit(f"no restart (exit {res.returncode}):\n{res.stderr}")
    started = parse_time(record.get("exec_at", record["started_at"]))
    assert started is not None
    return started.timestamp() - t0, json.loads(out.read_text())


def _importtime() -> str:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    res = subprocess.run([sys.executable, "-X", "importtime", "-c",
                          "import gastown_units.cli, gastown_units.services.polecat_health"],
                         env=env, capture_output=True, text=True, check=False)
    rows = []
    for line in res.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    total = sum(int(p.split("|")[0].split(":")[1]) for p in res.stderr.splitlines()
                if p.startswith("import time:") and p.split("|")[0].split(":")[1].strip()
                .isdigit())
    top = sorted(rows, reverse=True)[:12]
    lines = [f"imports (self total {total / 1000:.1f} ms); largest cumulative:"]
    lines += [f"  {us / 1000:7.1f} ms {name}" for us, name in top]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        _child(sys.argv[2], float(sys.argv[3]), sys.argv[4:])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--pyc", action="store_true", help="byte-compiled modules")
    parser.add_argument("--where", action="store_true", help="the caller of each call")
    parser.add_argument("--polecats", type=int, default=1,
                        help="polecats in the rig (the others stay running)")
    parser.add_argument("--cprofile", metavar="FILE",
                        help="write the last trial's cProfile statistics to FILE")
    args = parser.parse_args()
    from tests.harness import keeper
    from tests.harness.tmux_server import PrivateTmux
    from tests.harness.town import make_town
    from tests.tmux.test_polecat_health import polecat

    print(_importtime())
    server = PrivateTmux().start()
    latencies: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            town = make_town(Path(tmp) / "town")
            tree = polecat(town, server, "nux")
            for n in range(1, args.polecats):
                polecat(town, server, f"cat{n}")
            env = keeper.service_env()
            if args.pyc:
                env.pop("PYTHONDONTWRITEBYTECODE", None)
                env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pyc")
            for i in range(args.trials):
                if args.cprofile and i == args.trials - 1:
                    env["GTU_BENCH_CPROFILE"] = str(Path(args.cprofile).resolve())
                latency, prof = _trial(town, server, tree, Path(tmp) / f"prof{i}.json", env)
                latencies.append(latency)
                tools = [c["argv"][0] for c in prof["calls"]]
                print(f"trial {i}: agent started +{latency * 1000:.0f} ms; calls: "
                      f"{tools.count('bd')} bd, {tools.count('gt')} gt, "
                      f"{tools.count('tmux')} tmux, {tools.count('git')} git")
                if i in (0, args.trials - 1):
                    print(f"trial {i}: process start +{prof['start'] * 1000:.0f} ms")
                    for c in prof["calls"]:
                        print(f"  +{c['at'] * 1000:6.0f} ms {c['took'] * 1000:6.1f} ms  "
                              f"{' '.join(c['argv'])[:90]}")
                        if args.where:
                            print(f"{'':24}{c['where']}")
                    print(f"  agent started +{latency * 1000:.0f} ms, exit "
                          f"+{prof['end'] * 1000:.0f} ms")
                time.sleep(0.3)
    finally:
        server.stop()
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(f"sweep start → agent started: median {statistics.median(latencies):.3f} s, "
          f"p95 {p95:.3f} s, max {max(latencies):.3f} s ({len(latencies)} trials)")


if __name__ == "__main__":
    main()
