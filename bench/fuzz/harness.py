"""Drive every entry point with generated inputs; count and report the crashes."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import pickle
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bench.fuzz import services, tools  # noqa: F401 - they register their entry points
from bench.fuzz.gen import Gen
from bench.fuzz.targets import PORT, PURE, REGISTRY, SERVICE, Target, Workspace
from tests.harness.tmux_server import PrivateTmux

PURE_TIMEOUT = 20.0  # seconds one input of a pure entry point or port may take
SAVES_PER_SIGNATURE = 3  # failing inputs saved per distinct crash and chunk


class Hang(Exception):
    """One input ran longer than PURE_TIMEOUT."""


@dataclass
class Crash:
    target: str
    index: int
    kind: str
    message: str
    where: str
    input_repr: str
    size: int
    saved: str = ""

    @property
    def signature(self) -> tuple[str, str, str]:
        return (self.target, self.kind, self.where)


@dataclass
class Result:
    target: str
    inputs: int = 0
    seconds: float = 0.0
    crashes: list[Crash] = field(default_factory=list)
    count: int = 0  # crashes, including those not kept in ``crashes``

    def distinct(self) -> dict[tuple[str, str, str], tuple[int, Crash]]:
        """Signature -> (how many, the crash with the smallest input)."""
        found: dict[tuple[str, str, str], tuple[int, Crash]] = {}
        for crash in self.crashes:
            n, best = found.get(crash.signature, (0, crash))
            found[crash.signature] = (n + 1, crash if crash.size < best.size else best)
        return found


def input_for(t: Target, seed: int, index: int) -> Any:
    """Input ``index`` of entry point ``t``: independent of workers and of other inputs."""
    return t.make(Gen(random.Random(f"{seed}/{t.name}/{index}")))


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "gastown_units" in f.filename] or frames
    if not ours:
        return "?"
    f = ours[-1]
    path = f.filename
    path = path[path.index("gastown_units"):] if "gastown_units" in path else Path(path).name
    return f"{path}:{f.lineno} {f.name}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def _describe(exc: BaseException) -> tuple[str, str, str]:
    kind, where = getattr(exc, "kind", None), getattr(exc, "where", None)
    if kind is not None and where is not None:  # a service process's own traceback
        return str(kind), str(exc).partition(": ")[2], str(where)
    return type(exc).__name__, str(exc), _where(exc)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:80]


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise Hang(f"no answer within {PURE_TIMEOUT:g}s")


_WORKSPACES: dict[tuple[Path, int], Workspace] = {}  # (scratch, pid) -> this worker's


def _workspace(scratch: Path) -> Workspace:
    key = (scratch, os.getpid())
    ws = _WORKSPACES.get(key)
    if ws is None:
        root = scratch / f"worker-{os.getpid()}"
        root.mkdir(parents=True, exist_ok=True)
        ws = _WORKSPACES[key] = Workspace(root)
    return ws


def run_chunk(name: str, seed: int, start: int, stop: int, scratch: str, out: str | None
              ) -> Result:
    """Inputs ``start`` … ``stop - 1`` of one entry point (in this process)."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)  # restored below: the unit ring runs in this process
    t = REGISTRY[name]
    ws = _workspace(Path(scratch))
    result = Result(name)
    saved: dict[tuple[str, str, str], tuple[int, int]] = {}  # signature -> (saves, size)
    timed = t.kind != SERVICE
    old = signal.signal(signal.SIGALRM, _alarm) if timed else None
    began = time.monotonic()
    try:
        for index in range(start, stop):
            inp = input_for(t, seed, index)
            try:
                if timed:
                    signal.setitimer(signal.ITIMER_REAL, PURE_TIMEOUT)
                try:
                    t.run(inp, ws)
                finally:
                    if timed:
                        signal.setitimer(signal.ITIMER_REAL, 0)
            except t.accepted:
                pass
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # noqa: BLE001 - any other exception is a crash
                kind, message, where = _describe(exc)
                text = repr(inp)
                crash = Crash(name, index, kind, _clip(message, 300), where, _clip(text, 300),
                              len(text))
                result.count += 1
                saves, smallest = saved.get(crash.signature, (0, sys.maxsize))
                # the first few, and every one smaller than those before (the smallest)
                if out and (saves < SAVES_PER_SIGNATURE or crash.size < smallest):
                    saved[crash.signature] = (saves + 1, min(smallest, crash.size))
                    crash.saved = _save(Path(out), crash, inp, seed, exc)
                if len(result.crashes) < 2000:
                    result.crashes.append(crash)
            result.inputs += 1
    finally:
        if old is not None:
            signal.signal(signal.SIGALRM, old)
        logging.disable(previous)
    result.seconds = time.monotonic() - began
    return result


def _save(out: Path, crash: Crash, inp: Any, seed: int, exc: BaseException) -> str:
    directory = out / _slug(crash.target)
    directory.mkdir(parents=True, exist_ok=True)
    base = directory / f"{seed}-{crash.index}"
    with open(base.with_suffix(".pickle"), "wb") as handle:
        pickle.dump({"target": crash.target, "seed": seed, "index": crash.index,
                     "input": inp}, handle)
    details = getattr(exc, "stderr", None) or "".join(traceback.format_exception(exc))
    base.with_suffix(".txt").write_text(
        f"entry point: {crash.target}\nseed: {seed}\nindex: {crash.index}\n"
        f"exception: {crash.kind}: {crash.message}\nwhere: {crash.where}\n"
        f"input: {repr(inp)[:20000]}\n\n{details}", encoding="utf-8", errors="replace")
    return str(base.with_suffix(".pickle"))


def _chunks(count: int, workers: int) -> list[tuple[int, int]]:
    size = max(1, -(-count // (workers * 4)))  # a few chunks per worker: even finish times
    return [(i, min(count, i + size)) for i in range(0, count, size)]


def fuzz(targets: Iterable[Target], counts: dict[str, int], *, seed: int, workers: int = 1,
         out: str | None = None, echo: Any = None) -> list[Result]:
    """Run each entry point for its count (by kind); ``echo`` gets one Result at a time."""
    shm = Path("/dev/shm")  # tmpfs: the state writers' fsyncs cost nothing there
    scratch = tempfile.mkdtemp(prefix="gtu-fuzz-", dir=shm if os.access(shm, os.W_OK) else None)
    pool = (multiprocessing.get_context("fork").Pool(workers, maxtasksperchild=None)
            if workers > 1 else None)
    results = []
    try:
        for t in targets:
            count = counts[t.kind]
            began = time.monotonic()
            jobs = [(t.name, seed, a, b, scratch, out) for a, b in _chunks(count, workers)]
            parts = pool.starmap(run_chunk, jobs) if pool else [run_chunk(*j) for j in jobs]
            total = Result(t.name, seconds=time.monotonic() - began)
            for part in parts:
                total.inputs += part.inputs
                total.count += part.count
                total.crashes += part.crashes
            results.append(total)
            if echo:
                echo(total)
    finally:
        if pool:
            pool.close()
            pool.join()
        for key in [k for k in _WORKSPACES if k[0] == Path(scratch)]:
            town = _WORKSPACES.pop(key).extra.get("service")
            if town is not None:
                town.stop()
        sockets = Path(scratch) / "tmux-sockets"
        for socket in sockets.iterdir() if sockets.is_dir() else ():
            PrivateTmux(socket=socket.name).stop()  # kill-server, socket file removed
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def report_line(r: Result) -> str:
    return f"{r.target}: {r.inputs} inputs, {r.count} crashes, {r.seconds:.1f}s"


def crash_lines(r: Result) -> list[str]:
    lines = []
    for (_t, kind, where), (n, c) in sorted(r.distinct().items(), key=lambda x: -x[1][0]):
        lines.append(f"  CRASH {r.target} [{n}x] {kind}: {c.message} at {where}")
        lines.append(f"    input #{c.index}: {c.input_repr}")
        if c.saved:
            lines.append(f"    saved: {c.saved}")
    return lines


def select(only: Sequence[str], kinds: Sequence[str]) -> list[Target]:
    chosen = [t for t in REGISTRY.values() if t.kind in kinds]
    if only:
        chosen = [t for t in chosen if any(o in t.name for o in only)]
    return chosen


def replay(path: Path) -> int:
    """Run one saved input again and show its traceback."""
    with open(path, "rb") as handle:
        saved = pickle.load(handle)  # noqa: S301 - our own file
    t = REGISTRY[saved["target"]]
    with tempfile.TemporaryDirectory(prefix="gtu-fuzz-replay-") as scratch:
        ws = Workspace(Path(scratch))
        print(f"{t.name}: input #{saved['index']} of seed {saved['seed']}: "
              f"{_clip(repr(saved['input']), 2000)}")
        try:
            t.run(saved["input"], ws)
        except t.accepted as exc:
            print(f"accepted: {type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - shown, then the exit status says it
            traceback.print_exception(exc)
            print(getattr(exc, "stderr", ""), file=sys.stderr)
            return 1
        finally:
            town = ws.extra.get("service")
            if town is not None:
                town.stop()
    print("no crash")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/fuzz", description="Fuzz every reader, parser, port and service.")
    parser.add_argument("--count", type=int, default=10_000,
                        help="inputs per pure entry point (default 10000)")
    parser.add_argument("--port-count", type=int, default=None,
                        help="inputs per port (each runs a fake binary; default --count)")
    parser.add_argument("--service-count", type=int, default=None,
                        help="inputs per service (setup and one pass in this process, "
                             "about 0.1 s each; GTU_FUZZ_SERVICE_PROCESS=1 runs each as a "
                             "process instead; default --count)")
    parser.add_argument("--seed", type=int, default=None, help="default: random, printed")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", default=None,
                        help="directory for failing inputs (default /tmp/gtu-fuzz-crashes-SEED)")
    parser.add_argument("--only", action="append", default=[],
                        help="entry points whose name contains this (repeatable)")
    parser.add_argument("--kinds", default="pure,port,service",
                        help="comma-separated: pure, port, service")
    parser.add_argument("--list", action="store_true", help="list entry points and contracts")
    parser.add_argument("--replay", type=Path, help="run one saved .pickle input again")
    args = parser.parse_args(argv)
    if args.replay:
        return replay(args.replay)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    chosen = select(args.only, kinds)
    if args.list:
        for t in chosen:
            accepted = ", ".join(e.__name__ for e in t.accepted)
            print(f"{t.name} [{t.kind}] accepts {accepted}: {t.contract}")
        return 0
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    out = args.out or f"/tmp/gtu-fuzz-crashes-{seed}"
    counts = {PURE: args.count,
              PORT: args.port_count if args.port_count is not None else args.count,
              SERVICE: args.service_count if args.service_count is not None
              else args.count}
    print(f"seed {seed}; {len(chosen)} entry points; inputs per entry point: "
          f"pure {counts[PURE]}, port {counts[PORT]}, service {counts[SERVICE]}; "
          f"workers {args.workers}; failing inputs go to {out}", flush=True)

    def echo(r: Result) -> None:
        print(report_line(r), flush=True)
        for line in crash_lines(r):
            print(line, flush=True)

    began = time.monotonic()
    results = fuzz(chosen, counts, seed=seed, workers=args.workers, out=out, echo=echo)
    print("\n== summary")
    for r in results:
        print(report_line(r))
    crashes = sum(r.count for r in results)
    distinct = sum(len(r.distinct()) for r in results)
    failing = sum(1 for r in results if r.count)
    print(f"total: {len(results)} entry points, {sum(r.inputs for r in results)} inputs, "
          f"{crashes} crashes ({distinct} distinct, in {failing} entry points), "
          f"{time.monotonic() - began:.1f}s; seed {seed}")
    return 1 if crashes else 0
