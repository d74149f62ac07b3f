"""Each service's setup and one pass (``gastown-units run SERVICE --once``) against a
generated town: a seeded base town (a polecat with hooked work, LIFECYCLE mail, state
files) with one to three of its files replaced by generated ones, and now and then one
``bd``/``gt`` answer replaced by generated output. Stand-in bd/gt/agent, a private tmux
server per worker (``tmux -L``), never the default one.

By default the service runs in the worker's process (:mod:`bench.fuzz.inprocess`: the
stand-ins are called as functions, fixed pauses are shortened), about 0.1 s an input;
``GTU_FUZZ_SERVICE_PROCESS=1`` runs each input as ``python -m gastown_units`` instead
(about 1 s an input), for a check that nothing differs.

A crash: a traceback (on stderr, or a logged bug), an exit status other than 0, 1 or 78,
or no exit within the timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.fuzz import seeds as S
from bench.fuzz.gen import Gen
from bench.fuzz.targets import SERVICE, Workspace, target
from bench.fuzz.tools import _rc, _stderr

TIMEOUT = 90.0
# In process (fast: stand-ins called as functions) unless GTU_FUZZ_SERVICE_PROCESS=1.
IN_PROCESS = os.environ.get("GTU_FUZZ_SERVICE_PROCESS", "") != "1"
OK_CODES = (0, 1, 78)

# Town files a service reads, and what a realistic one looks like.
FILES: dict[str, tuple[str, tuple[Any, ...]]] = {
    "mayor/rigs.json": ("json", (S.RIGS_JSON,)),
    "mayor/daemon.json": ("json", (S.DAEMON_JSON,)),
    "mayor/town.json": ("json", (S.TOWN_JSON,)),
    ".beads/routes.jsonl": ("jsonl", S.ROUTES),
    "settings/config.json": ("json", S.SETTINGS),
    "gastown/settings/config.json": ("json", S.SETTINGS),
    ".beads-wisp/config/gastown.json": ("json", (S.WISP, {"values": {}, "blocked": []})),
    "deacon/heartbeat.json": ("json", (S.HEARTBEAT,)),
    "deacon/state.json": ("json", (S.AGENT_STATE,)),
    "gastown/witness/state.json": ("json", (S.AGENT_STATE,)),
    "daemon/restart_state.json": ("json", (S.RESTARTS,)),
    "daemon/units/polecat-health.json": ("json", (S.SWEEP_STATE,)),
    "daemon/units/witness-gastown.json": ("json", ({"ladder": {"gt-gastown-nux": S.LADDER},
                                                    "slings": S.BOOK, "dirty_notified": {}},)),
    "daemon/units/split-town.json": ("json", ({},)),
    "daemon/shutdowns/gt-gastown-nux.json": ("json", (S.SHUTDOWN_MARK,)),
    "daemon/shutdowns/hq-deacon.json": ("json", ({**S.SHUTDOWN_MARK, "session": "hq-deacon"},)),
    "gastown/polecats/nux/gastown/.git": ("text", S.GIT_FILES),
    "gastown/config.json": ("json", ({"default_branch": "main"},)),
}

TOOL_FAULTS = (("bd", "list"), ("bd", "show"), ("bd", "ready"), ("gt", "mail"))


class ServiceCrash(Exception):
    """A service process crashed; ``kind`` and ``where`` name the underlying failure."""

    def __init__(self, kind: str, message: str, where: str, stderr: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind, self.where, self.stderr = kind, where, stderr


def judge(returncode: int, stderr: str) -> ServiceCrash | None:
    """The crash a finished service process shows, or None."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            frames, j = [], i + 1
            while j < len(lines) and (lines[j].startswith(" ") or not lines[j].strip()):
                if lines[j].strip().startswith("File "):
                    frames.append(lines[j].strip())
                j += 1
            ours = [f for f in frames if "gastown_units" in f] or frames or ["?"]
            where = ours[-1]
            last = lines[j] if j < len(lines) else "?"
            kind, _, message = last.partition(": ")
            return ServiceCrash(kind, message, _short(where), stderr)
    if returncode not in OK_CODES:
        tail = lines[-1] if lines else ""
        return ServiceCrash(f"exit status {returncode}", tail[:200], "process", stderr)
    return None


def _short(frame: str) -> str:
    """``File "/x/gastown_units/a/b.py", line 3, in f`` -> ``gastown_units/a/b.py:3 f``."""
    try:
        path, line, func = frame.split(", ")
        path = path.removeprefix("File ").strip('"')
        path = path[path.index("gastown_units"):] if "gastown_units" in path else path
        return f"{path}:{line.removeprefix('line ')} {func.removeprefix('in ')}"
    except ValueError:
        return frame


def _service_input(g: Gen) -> dict[str, Any]:
    files: dict[str, bytes | None] = {}
    for _ in range(g.rng.randrange(1, 4)):
        rel = g.pick(sorted(FILES))
        kind, seeds = FILES[rel]
        if g.chance(0.05):
            files[rel] = None
        elif kind == "jsonl":
            files[rel] = g.jsonl(seeds)
        elif kind == "text":
            files[rel] = g.mutate_text(g.pick(seeds)).encode("utf-8", "surrogatepass")
        else:
            files[rel] = g.document(seeds)
    fault = None
    if g.chance(0.25):
        tool, command = g.pick(TOOL_FAULTS)
        out_seeds = S.INBOXES if tool == "gt" else S.BD_OUTPUTS
        fault = {"tool": tool, "command": command, "rc": _rc(g), "err": _stderr(g),
                 "out": g.document(out_seeds)}
    return {"files": files, "fault": fault, "degraded": g.chance(0.5)}


class ServiceTown:
    """A worker's base town, run directory and private tmux server."""

    def __init__(self, ws: Workspace) -> None:
        from tests.harness.tmux_server import PrivateTmux
        self.ws = ws
        self.base = ws.root / "service-base"
        self.run_dir = ws.root / "service-run-0"
        self._runs = 0
        self.server = PrivateTmux(socket=f"gtu-fuzz-{os.getpid()}-{os.urandom(4).hex()}")
        sockets = ws.root.parent / "tmux-sockets"
        sockets.mkdir(exist_ok=True)
        (sockets / self.server.socket).touch()  # for the main process's clean-up
        self._build()

    def _build(self) -> None:
        from tests.harness.town import STANDINS, hook_work, make_town
        town = make_town(self.base)
        (town / "gastown" / "polecats" / "nux" / "gastown").mkdir(parents=True, exist_ok=True)
        hook_work(town, "gastown", "nux")
        gt = str(STANDINS / "gt")
        for to, sender, subject, body in (
                ("deacon/", "gastown/witness", "LIFECYCLE: gastown/witness requesting cycle",
                 '{"action":"cycle"}'),
                ("gastown/witness", "gastown/nux",
                 "LIFECYCLE: gastown/polecats/nux requesting shutdown", "polecat: nux")):
            subprocess.run([gt, "standin", "seed-mail", "--to", to, "--from", sender, "-s",
                            subject, "-m", body], cwd=town, check=True, capture_output=True,
                           timeout=60)
        for rel, (kind, seeds) in FILES.items():
            if kind == "json" and rel != "mayor/town.json":
                path = town / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(seeds[0]), encoding="utf-8")
        (town / ".beads-wisp" / "config" / "gastown.json").write_text(
            json.dumps({"values": {}, "blocked": []}), encoding="utf-8")

    def prepare(self, inp: dict[str, Any]) -> Path:
        self.server.stop()  # first: the last input's agents must not write into the copy
        # A fresh directory per input: an agent still ending may write into the last one.
        for old in self.ws.root.glob("service-run-*"):
            shutil.rmtree(old, ignore_errors=True)
        self._runs += 1
        self.run_dir = self.ws.root / f"service-run-{self._runs}"
        shutil.copytree(self.base, self.run_dir, symlinks=True)
        for rel, data in inp["files"].items():
            path = self.run_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                shutil.rmtree(path)
            path.unlink(missing_ok=True)
            if data is not None:
                path.write_bytes(data)
        return self.run_dir

    def tools(self, inp: dict[str, Any]) -> list[str]:
        """``--bd-bin``/``--gt-bin`` overrides: a wrapper answering one command itself."""
        from tests.harness.town import STANDINS
        fault = inp["fault"]
        if fault is None:
            return []
        wrappers = self.ws.root / "service-bin"
        wrappers.mkdir(exist_ok=True)
        tool = wrappers / fault["tool"]
        (wrappers / f"{fault['tool']}.out").write_bytes(fault["out"])
        (wrappers / f"{fault['tool']}.err").write_bytes(fault["err"])
        rc = fault["rc"]
        end = f"kill -{-rc} $$" if rc < 0 else f"exit {rc}"
        tool.write_text(
            f'#!/bin/sh\nif [ "$1" = "{fault["command"]}" ]; then\n'
            f'  cat "$0.out"; cat "$0.err" >&2; {end}\nfi\n'
            f'exec "{STANDINS / fault["tool"]}" "$@"\n', encoding="utf-8")
        os.chmod(tool, 0o755)
        return [f"--{fault['tool']}-bin", str(tool)]

    def run(self, service: str, inp: dict[str, Any]) -> None:
        town = self.prepare(inp)
        args = ["--start-timeout", "5", "--event-file", str(self.ws.root / "events")]
        if service in ("witness", "refinery"):
            args += ["--rig", "gastown"]
        if service == "deacon-keeper":
            args += ["--degraded", "true" if inp["degraded"] else "false"]
        self.server.start()
        if IN_PROCESS:
            self._run_in_process(service, town, args, inp["fault"])
        else:
            self._run_as_process(service, town, [*args, *self.tools(inp)])

    def _run_in_process(self, service: str, town: Path, args: list[str],
                        fault: dict[str, Any] | None) -> None:
        import sys

        from bench.fuzz import inprocess
        from tests.harness.town import AGENT, STANDINS
        standins = {"bd": STANDINS / "bd", "gt": STANDINS / "gt"}
        argv = ["run", service, "--once", "--town", str(town), "--tmux-socket",
                self.server.socket, "--agent-command", f"{sys.executable} {AGENT}",
                "--kill-grace", "1", "--bd-bin", str(standins["bd"]),
                "--gt-bin", str(standins["gt"]), *args]
        inprocess.run_service(argv, standins, fault)

    def _run_as_process(self, service: str, town: Path, args: list[str]) -> None:
        from tests.harness import keeper
        try:
            result = keeper.run_once(service, town, self.server.socket, *args,
                                     timeout=TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise ServiceCrash("Hang", f"no exit within {TIMEOUT:g}s", "process",
                               str(exc.stderr or "")) from None
        crash = judge(result.returncode, result.stderr)
        if crash is not None:
            raise crash

    def stop(self) -> None:
        self.server.stop()


def _runner(service: str) -> Any:
    def run(inp: Any, ws: Workspace) -> None:
        town = ws.extra.get("service")
        if town is None:
            town = ws.extra["service"] = ServiceTown(ws)
        town.run(service, inp)
    return run


SERVICES = ("deacon-keeper", "witness", "refinery", "polecat-health", "lifecycle-mail")

for _name in SERVICES:
    target(f"service {_name} (setup + one pass)", SERVICE, _service_input, (),
           "exits 0, 1 (an action failed) or 78 (configuration error), never a traceback"
           )(_runner(_name))
