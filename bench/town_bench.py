"""The figures of issue 12, measured on the installed .deb in a guest systemd.

    sudo /usr/bin/python3 -m bench.town_bench dist/gastown-units_0.1.0_all.deb \\
        [--sizes 1x1 4x6 10x20] [--trials 20] [--idle-seconds 120] [--load 2]

For each town size RxP (R rigs with P polecats each, every polecat with hooked work) a
fresh guest systemd is booted (tests/harness/guest.py), the package is installed with apt,
the town is built as Gas Town builds it (stand-in ``bd``/``gt``/agent, git worktrees, work
hooked to each polecat's agent bead) and brought up with ``gastown-units setup`` as the
README tells an operator. Then, in this order:

1. **idle**: the town fully up and quiet for ``--idle-seconds``. Processes started are
   counted from the guest PID namespace's own PID allocations (``ns_last_pid`` read by one
   probe process that lives in the guest's PID namespace and never forks; threads take
   PIDs too) and from BSD process accounting (``acct(2)`` switched on in the guest's PID
   namespace: one record per process that exits, with its command name). CPU is the cgroup
   ``usage_usec`` of every ``gastown-*.service`` but the tmux host (the bd/gt/tmux they
   start included), read from the host; the oneshot sweeps that come and go are counted
   by what ``system.slice`` gained beyond its live units. RSS is ``MemoryCurrent`` where
   the guest's systemd has it, else the main PID's VmRSS (the table says which).
2. **exposure**: ``systemd-analyze security`` of every installed unit that runs our code.
3. **cold start**: ``systemctl restart gastown-tmux.service`` (every agent dies with the
   tmux server) until every agent with work runs again (Deacon, Witnesses, Refineries,
   polecats), by each agent's own start record.
4. **crash -> running** per role: the agent process in the pane is killed with SIGKILL
   by the probe (its clock) until the moment the new agent program began, by its start
   record (``.agent/record.json`` ``exec_at``, the same clock: the stand-in's first
   instruction, before its re-exec and imports, which took another ~0.1 s of the stand-in's
   own and were counted up to stop 18); polled from the host as files, no guest
   processes. Polecats are taken round-robin across rigs (trial i: rig i mod R, polecat
   (i div R) mod P), so consecutive kills hit different rigs and each polecat is killed
   as rarely as the town allows; a polecat whose restart backoff is still running when
   its turn comes is given ``gastown-units clear-backoff`` first (outside the measured
   time; the count is printed). Every trial waits for the whole town to be up again,
   no sweep running, one quiet second, and then for one second in which the guest
   started no process (a restart's aftermath, such as the re-reads a mail causes, is
   over). The quiet trials first wait (at most ``--quiet-wait`` s) for the host's load
   average to fall below ``--quiet-load`` (0.3, the issue's "quiet machine"; the table
   shows what it reached). The polecat trials are
   repeated beside ``--load`` busy processes on the host.

It prints figures as it goes and a table at the end; it asserts nothing about timings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import statistics
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tests.harness.guest import GuestSystemd
from tests.harness.guest_town import STANDIN_DIR, add_polecats_with_work, new_town

OWNER = "alice"
TMUX_UNIT = "gastown-tmux.service"
ACCT_FILE = "/var/tmp/gastown-bench.acct"
RESERVED_PIDS = 300  # the kernel's first PID after a wrap-around (kernel/pid.c)
EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")

_START = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _START:7.1f}s] {message}", flush=True)


# --- pure helpers (tests/unit/test_town_bench.py) -------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    """``"4x6"`` -> (4, 6)."""
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise argparse.ArgumentTypeError(f"size must be RxP (e.g. 4x6), not {text!r}")
    return int(match.group(1)), int(match.group(2))


def pid_delta(previous: int, current: int, pid_max: int) -> int:
    """PIDs allocated between two reads of ``ns_last_pid`` (one wrap-around at most:
    after ``pid_max - 1`` the kernel goes on at RESERVED_PIDS)."""
    if current >= previous:
        return current - previous
    return (pid_max - 1 - previous) + (current - RESERVED_PIDS + 1)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in (0, 1])."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summary(values: Sequence[float]) -> str:
    """``median / p95 / max`` in seconds, or ``-`` without values."""
    if not values:
        return "-"
    return (f"{statistics.median(values):.3f} / {percentile(values, 0.95):.3f} / "
            f"{max(values):.3f} s")


def format_table(headers: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]]) -> str:
    """A plain-text table: the first column is the row label, one column per header."""
    label_width = max([len("figure"), *(len(label) for label, _ in rows)])
    widths = [max([len(h), *(len(cells[i]) for _, cells in rows if i < len(cells))])
              for i, h in enumerate(headers)]
    lines = ["  ".join(["figure".ljust(label_width),
                        *(h.ljust(w) for h, w in zip(headers, widths, strict=True))]).rstrip(),
             "  ".join(["-" * label_width, *("-" * w for w in widths)])]
    for label, cells in rows:
        padded = [(cells[i] if i < len(cells) else "") for i in range(len(headers))]
        lines.append("  ".join([label.ljust(label_width),
                                *(c.ljust(w) for c, w in zip(padded, widths, strict=True))]
                               ).rstrip())
    return "\n".join(lines)


@dataclass(frozen=True)
class AcctRecord:
    """One ``struct acct_v3`` record (linux/acct.h)."""

    pid: int
    ppid: int
    uid: int
    btime: int
    comm: str


_ACCT_V3 = struct.Struct("<BBHIIIIIIf8H16s")  # 64 bytes


def parse_acct(data: bytes) -> list[AcctRecord]:
    """Records of a BSD process accounting file (version 3; other records skipped)."""
    records = []
    for offset in range(0, len(data) - _ACCT_V3.size + 1, _ACCT_V3.size):
        fields = _ACCT_V3.unpack_from(data, offset)
        if fields[1] != 3:
            continue
        comm = fields[-1].split(b"\0", 1)[0].decode(errors="replace")
        records.append(AcctRecord(pid=fields[6], ppid=fields[7], uid=fields[4],
                                  btime=fields[8], comm=comm))
    return records


def in_pid_range(pid: int, first: int, last: int) -> bool:
    """Whether ``pid`` was allocated after ``first`` up to ``last`` (``ns_last_pid``
    values; ``last < first`` means one wrap-around)."""
    if last >= first:
        return first < pid <= last
    return pid > first or RESERVED_PIDS <= pid <= last


def parse_time(text: str) -> float:
    """RFC 3339 (Go's form, ``Z`` or an offset) -> epoch seconds."""
    return (datetime.fromisoformat(text) - EPOCH).total_seconds()


# --- the probe: one process in the guest's PID namespace that never forks ---------------

_PROBE = r"""
import ctypes, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.acct.argtypes = [ctypes.c_char_p]
def last():
    with open("/proc/sys/kernel/ns_last_pid") as f:
        return int(f.read())
with open("/proc/sys/kernel/pid_max") as f:
    pid_max = int(f.read())
print("ready", os.getpid(), pid_max, flush=True)
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "s":
        reply = f"{last()} {time.time():.6f}"
    elif cmd == "k":
        now = time.time()
        try:
            os.kill(int(arg), signal.SIGKILL)
            reply = f"{now:.6f}"
        except ProcessLookupError:
            reply = "gone"
    elif cmd == "acct":
        rc = libc.acct(arg.encode() if arg else None)
        reply = f"{rc} {ctypes.get_errno() if rc else 0}"
    else:
        break
    print(reply, flush=True)
"""


class Probe:
    """``ns_last_pid`` of the guest's PID namespace, kills with a timestamp, acct on/off.

    Started once (one PID in the guest); every answer costs the guest no process."""

    def __init__(self, guest: GuestSystemd) -> None:
        self._proc = subprocess.Popen(
            ["nsenter", "-t", str(guest.pid1), "-m", "-p", "-r", "-w", "--",
             "/usr/bin/python3", "-I", "-c", _PROBE],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        ready = self._readline().split()
        if not ready or ready[0] != "ready":
            raise RuntimeError(f"probe did not start: {ready!r}")
        self.guest_pid = int(ready[1])
        self.pid_max = int(ready[2])

    def _readline(self) -> str:
        assert self._proc.stdout is not None
        return self._proc.stdout.readline().strip()

    def ask(self, line: str) -> str:
        assert self._proc.stdin is not None
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        return self._readline()

    def sample(self) -> tuple[int, float]:
        """(ns_last_pid, time.time()) in the guest."""
        pid, now = self.ask("s").split()
        return int(pid), float(now)

    def kill(self, guest_pid: int) -> float | None:
        """SIGKILL ``guest_pid``; the time just before, or None if it was gone."""
        answer = self.ask(f"k {guest_pid}")
        return None if answer == "gone" else float(answer)

    def acct(self, path: str | None) -> None:
        rc, errno = self.ask(f"acct {path or ''}").split()
        if rc != "0":
            raise OSError(int(errno), f"acct({path!r}) in the guest failed")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("q")
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()  # our own child (nsenter), by PID
            self._proc.wait(timeout=5)


# --- the town ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Agent:
    role: str  # deacon, witness, refinery, polecat
    session: str
    workdir: str  # in the guest
    address: str  # for gastown-units clear-backoff


@dataclass
class Town:
    path: str
    rigs: dict[str, str]  # rig -> prefix
    polecats: dict[str, list[str]]  # rig -> names
    agents: list[Agent] = field(default_factory=list)

    def of_role(self, role: str) -> list[Agent]:
        return [a for a in self.agents if a.role == role]


def town_shape(path: str, rigs: int, polecats: int) -> Town:
    letters = "abcdefghijklmnopqrstuvwxyz"
    names = {f"rig{r}": f"r{letters[r // 26 % 26]}{letters[r % 26]}" for r in range(rigs)}
    town = Town(path, names, {rig: [f"p{p:02d}" for p in range(polecats)] for rig in names})
    town.agents.append(Agent("deacon", "hq-deacon", f"{path}/deacon", "deacon/"))
    for rig in names:
        town.agents.append(Agent("witness", f"gt-{rig}-witness", f"{path}/{rig}/witness",
                                 f"{rig}/witness"))
        town.agents.append(Agent("refinery", f"gt-{rig}-refinery",
                                 f"{path}/{rig}/refinery/rig", f"{rig}/refinery"))
    for p in range(polecats):  # round-robin across rigs: the polecat trials' order
        for rig in names:
            name = town.polecats[rig][p]
            town.agents.append(Agent("polecat", f"gt-{rig}-{name}",
                                     f"{path}/{rig}/polecats/{name}/{rig}", f"{rig}/{name}"))
    return town


class Host:
    """What the host sees of the guest without starting a guest process."""

    def __init__(self, guest: GuestSystemd) -> None:
        self.guest = guest
        self.cgroup = _unified_mount() / guest.name

    def record(self, agent: Agent) -> dict[str, object] | None:
        path = self.guest.root / agent.workdir.lstrip("/") / ".agent" / "record.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def alive_agent(self, guest_pid: int) -> bool:
        """A live (not zombie) stand-in agent with that PID in the guest."""
        proc = self.guest.root / "proc" / str(guest_pid)
        try:
            stat = (proc / "stat").read_text()
            comm = (proc / "comm").read_text().strip()
        except OSError:
            return False
        return comm == "claude" and stat.rpartition(")")[2].split()[0] != "Z"

    def running(self, agent: Agent) -> tuple[int, float] | None:
        """(guest PID, start time) of the agent if its recorded process runs."""
        record = self.record(agent)
        if record is None:
            return None
        # exec_at: when the new agent program began; started_at comes ~0.1 s later, after
        # the stand-in's own re-exec and imports (no supervisor work).
        pid, started = record.get("pid"), record.get("exec_at", record.get("started_at"))
        if not isinstance(pid, int) or not isinstance(started, str):
            return None
        return (pid, parse_time(started)) if self.alive_agent(pid) else None

    def down(self, agents: Sequence[Agent]) -> list[Agent]:
        return [a for a in agents if self.running(a) is None]

    def unit_dirs(self) -> dict[str, Path]:
        """Every ``*.service`` cgroup below the guest's system.slice, by unit name."""
        base = self.cgroup / "system.slice"
        found: dict[str, Path] = {}
        with contextlib.suppress(OSError):
            for entry in base.iterdir():
                if entry.name.endswith(".slice"):
                    with contextlib.suppress(OSError):
                        found.update({e.name: e for e in entry.iterdir()
                                      if e.name.endswith(".service")})
                elif entry.name.endswith(".service"):
                    found[entry.name] = entry
        return found

    @staticmethod
    def usage_usec(cgroup: Path) -> int | None:
        try:
            for line in (cgroup / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value)
        except (OSError, ValueError):
            return None
        return None

    def cpu_snapshot(self) -> tuple[int, dict[str, int]]:
        """(system.slice usage, usage per live service unit), microseconds."""
        units = {name: usage for name, path in self.unit_dirs().items()
                 if (usage := self.usage_usec(path)) is not None}
        return self.usage_usec(self.cgroup / "system.slice") or 0, units

    def sweep_running(self) -> bool:
        procs = self.cgroup / "system.slice" / "gastown-polecat-health.service" / "cgroup.procs"
        try:
            return bool(procs.read_text().strip())
        except OSError:
            return False


def _unified_mount() -> Path:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1])
    raise RuntimeError("no cgroup2 (unified) hierarchy mounted on the host")


def wait_until(predicate: object, *, timeout: float, interval: float = 0.2) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_healthy(host: Host, town: Town, *, timeout: float, quiet: float = 1.0) -> list[Agent]:
    """Until every agent runs, no sweep runs and no agent started for ``quiet`` seconds;
    the agents still down at the timeout (empty: healthy)."""
    deadline = time.monotonic() + timeout
    while True:
        states = [host.running(a) for a in town.agents]
        missing = [a for a, s in zip(town.agents, states, strict=True) if s is None]
        latest = max((s[1] for s in states if s is not None), default=0.0)
        if not missing and not host.sweep_running() and time.time() - latest >= quiet:
            return []
        if time.monotonic() >= deadline:
            return missing
        time.sleep(0.2)


# --- phases -------------------------------------------------------------------------------


@dataclass
class Result:
    rows: dict[str, str] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def phase(result: Result, name: str) -> Iterator[None]:
    log(f"{name} ...")
    started = time.monotonic()
    try:
        yield
    finally:
        took = time.monotonic() - started
        result.phases[name] = took
        log(f"{name}: {took:.1f} s")


def build_town(guest: GuestSystemd, rigs: int, polecats: int) -> Town:
    shape = town_shape(f"/home/{OWNER}/gt", rigs, polecats)
    path = new_town(guest, OWNER, rigs=shape.rigs)
    assert path == shape.path, path
    add_polecats_with_work(guest, OWNER, path, {
        rig: (prefix, shape.polecats[rig]) for rig, prefix in shape.rigs.items()})
    # claude on the owner's PATH is the stand-in agent; setup finds it there.
    guest.run(["ln", "-sf", f"{STANDIN_DIR}/agent", "/usr/local/bin/claude"])
    return shape


def bring_up(guest: GuestSystemd, host: Host, town: Town, result: Result) -> None:
    setup = guest.run(["gastown-units", "setup", "--town", town.path, "--user", OWNER],
                      timeout=600)
    log(setup.stdout.strip().splitlines()[-1])
    started = time.monotonic()
    timeout = 120 + 3.0 * len(town.agents)
    last_report = started
    while True:
        down = host.down(town.agents)
        if not down or time.monotonic() - started > timeout:
            break
        if time.monotonic() - last_report >= 15:
            log(f"  {len(town.agents) - len(down)}/{len(town.agents)} agents running")
            last_report = time.monotonic()
        time.sleep(0.5)
    took = time.monotonic() - started
    up = len(town.agents) - len(down)
    result.rows["agents up after setup (of all)"] = (
        f"{up}/{len(town.agents)} in {took:.1f} s" if not down
        else f"{up}/{len(town.agents)} after {took:.0f} s (timeout)")
    log(f"town up: {up}/{len(town.agents)} agents running after {took:.1f} s")
    if down:
        log(f"  still down: {', '.join(a.session for a in down[:20])}")


def _describe_pid(guest: GuestSystemd, pid: int) -> str:
    """``pid`` (of the guest) as ``comm`` and unit, for the idle log; ``?`` once gone."""
    found = guest.run(["sh", "-c", 'cat /proc/"$1"/comm; grep -o "[^/]*$" /proc/"$1"/cgroup',
                       "describe", str(pid)], check=False).stdout.split()
    return f"{pid}:{'/'.join(found) or '?'}"


def measure_idle(guest: GuestSystemd, host: Host, probe: Probe, town: Town, seconds: float,
                 result: Result) -> None:
    missing = wait_healthy(host, town, timeout=300, quiet=5.0)
    if missing:
        log(f"idle window starts with {len(missing)} agents down")
    acct_host = guest.root / ACCT_FILE.lstrip("/")
    acct_host.write_bytes(b"")
    acct_host.chmod(0o600)
    seen: Counter[str] = Counter()
    before = host.unit_dirs().keys()
    cpu0_slice, cpu0 = host.cpu_snapshot()
    first, t0 = probe.sample()
    probe.acct(ACCT_FILE)
    allocated = 0
    previous = first
    transient_seen: set[str] = set()
    while True:
        time.sleep(0.5)
        current, now = probe.sample()
        allocated += pid_delta(previous, current, probe.pid_max)
        previous = current
        names = host.unit_dirs().keys()
        transient_seen.update(n for n in names if n not in before)
        if now - t0 >= seconds:
            break
    probe.acct(None)
    last, t1 = current, now
    cpu1_slice, cpu1 = host.cpu_snapshot()
    window = t1 - t0
    records = [r for r in parse_acct(acct_host.read_bytes())
               if in_pid_range(r.pid, first, last) and r.btime >= int(t0) - 1]
    for record in records:
        seen[record.comm] += 1
    result.rows["idle PID allocations /s (guest ns_last_pid)"] = f"{allocated / window:.2f}"
    result.rows["idle processes /s (acct, exited)"] = f"{len(records) / window:.2f}"
    top = ", ".join(f"{comm} {count / window:.2f}" for comm, count in seen.most_common(6))
    result.rows["idle processes /s by command"] = top or "-"
    log(f"idle {window:.1f} s: {allocated} PIDs allocated ({allocated / window:.2f}/s), "
        f"{len(records)} processes exited ({len(records) / window:.2f}/s)")
    log(f"  by command ({window:.0f} s): "
        + (", ".join(f"{c} {n}" for c, n in seen.most_common()) or "none"))
    parents = Counter(r.ppid for r in records)
    if parents:
        log("  by parent: " + ", ".join(f"{_describe_pid(guest, ppid)} {n}"
                                        for ppid, n in parents.most_common(6)))
        changed = guest.run(["find", town.path, "/run/gastown-tmux", "-newermt", f"@{t0:.3f}",
                             "-not", "-path", "*/.agent/*"], check=False).stdout.split()
        log(f"  files changed in the window ({len(changed)}): " + " ".join(changed[:12]))
    # CPU: the live supervisor units' deltas, plus what the slice gained beyond its live
    # units (the oneshot sweeps and any other unit that came and went).
    supervisors = 0
    per_unit: dict[str, int] = {}
    live_delta = 0
    for name, usage in cpu1.items():
        delta = usage - cpu0[name] if name in cpu0 and usage >= cpu0[name] else usage
        live_delta += delta
        if name.startswith("gastown-") and name != TMUX_UNIT:
            per_unit[name] = delta
            supervisors += delta
    transient = max(0, (cpu1_slice - cpu0_slice) - live_delta)
    others = sorted(n for n in transient_seen if not n.startswith("gastown-"))
    supervisors += transient
    cpu_pct = supervisors / (window * 1e6) * 100
    result.rows["idle CPU, all supervisors (% of a core)"] = f"{cpu_pct:.2f} %"
    result.rows["  of which oneshot runs (polecat-health ...)"] = (
        f"{transient / (window * 1e6) * 100:.2f} %" + (" (+ other units!)" if others else ""))
    log(f"  supervisor CPU {supervisors / 1e6:.2f} s in {window:.0f} s = {cpu_pct:.2f} % "
        f"of a core; oneshot/transient units {transient / 1e6:.2f} s "
        f"(seen: {', '.join(sorted(transient_seen)) or 'none'})")
    for name, delta in sorted(per_unit.items(), key=lambda kv: -kv[1])[:8]:
        log(f"    {name}: {delta / (window * 1e6) * 100:.2f} %")
    if others:
        log(f"  note: non-gastown units came and went in the window: {', '.join(others)}")
    measure_rss(guest, host, town, result)


def measure_rss(guest: GuestSystemd, host: Host, town: Town, result: Result) -> None:
    rig0 = next(iter(town.rigs))
    groups = {"deacon-keeper": ["gastown-deacon-keeper.service"],
              "lifecycle-mail": ["gastown-lifecycle-mail.service"],
              "witness@": [f"gastown-witness@{r}.service" for r in town.rigs],
              "refinery@": [f"gastown-refinery@{r}.service" for r in town.rigs]}
    source = "VmRSS of the main PID"
    for label, units in groups.items():
        sizes = []
        for unit in units:
            shown = guest.show(unit, "MainPID", "MemoryCurrent")
            current = shown.get("MemoryCurrent", "")
            if current.isdigit():
                sizes.append(int(current) / 2**20)
                source = "MemoryCurrent"
                continue
            sizes.append(_vmrss_mb(host, int(shown.get("MainPID", "0") or 0)))
        good = [s for s in sizes if s > 0]
        cell = "-" if not good else (
            f"{good[0]:.1f} MB" if len(good) == 1
            else f"{statistics.median(good):.1f} / {max(good):.1f} MB (median/max)")
        result.rows[f"RSS {label} ({source})"] = cell
        log(f"  RSS {label}: {cell} [{source}]" + (f" (rig {rig0} ...)" if "@" in label else ""))


def _vmrss_mb(host: Host, guest_pid: int) -> float:
    if guest_pid <= 0:
        return 0.0
    try:
        status = (host.guest.root / "proc" / str(guest_pid) / "status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure_security(guest: GuestSystemd, town: Town, result: Result) -> None:
    listing = guest.run(["systemctl", "list-unit-files", "--no-legend", "--no-pager",
                         "--type=service", "gastown*"]).stdout
    rig0 = next(iter(town.rigs))
    for line in listing.splitlines():
        if not line.split():
            continue
        unit = line.split()[0]
        instance = unit
        if unit.endswith("@.service"):
            name = "bench" if "failed" in unit else rig0
            instance = unit.replace("@.service", f"@{name}.service")
        execs = guest.show(instance, "ExecStart").get("ExecStart", "")
        if "gastown-units" not in execs:
            continue
        out = guest.run(["systemd-analyze", "security", "--no-pager", instance],
                        check=False).stdout
        match = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\S+)", out)
        cell = f"{match.group(1)} {match.group(2)}" if match else "?"
        label = unit.replace("@.service", "@RIG.service") if "failed" not in unit else unit
        result.rows[f"exposure {label}"] = cell
        log(f"  systemd-analyze security {instance}: {cell}")


def measure_cold_start(guest: GuestSystemd, host: Host, town: Town, result: Result) -> None:
    missing = wait_healthy(host, town, timeout=300)
    if missing:
        log(f"cold start begins with {len(missing)} agents down")
    started = time.time()
    guest.systemctl("restart", TMUX_UNIT)
    returned = time.time() - started
    timeout = 120 + 3.0 * len(town.agents)
    back: dict[str, float] = {}
    last_report = time.monotonic()
    while len(back) < len(town.agents) and time.time() - started < timeout:
        for agent in town.agents:
            if agent.session not in back:
                state = host.running(agent)
                if state is not None and state[1] > started:
                    back[agent.session] = state[1] - started
        if time.monotonic() - last_report >= 15:
            log(f"  {len(back)}/{len(town.agents)} agents back")
            last_report = time.monotonic()
        time.sleep(0.1)
    total = max(back.values(), default=float("nan"))
    cell = (f"{total:.1f} s ({len(back)} agents)" if len(back) == len(town.agents)
            else f"{len(back)}/{len(town.agents)} back after {time.time() - started:.0f} s")
    result.rows["cold start: tmux host restart -> all agents"] = cell
    per_role = []
    for role in ("deacon", "witness", "refinery", "polecat"):
        times = [back[a.session] for a in town.of_role(role) if a.session in back]
        if times:
            per_role.append(f"{role} {max(times):.1f}")
    result.rows["  last of each role (s)"] = ", ".join(per_role)
    log(f"cold start: restart returned after {returned:.1f} s; {cell}; last per role: "
        + ", ".join(per_role))


def _backoff_active(guest: GuestSystemd, town: Town, session: str) -> bool:
    path = guest.root / town.path.lstrip("/") / "daemon" / "restart_state.json"
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))["agents"][session]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    now = time.time()
    try:
        until = parse_time(str(entry.get("backoff_until") or "0001-01-01T00:00:00Z"))
        loop = parse_time(str(entry.get("crash_loop_since") or "0001-01-01T00:00:00Z"))
    except ValueError:
        return True  # unreadable: clear it rather than measure a held restart
    return until > now or loop > 0


@dataclass
class Trials:
    latencies: list[float] = field(default_factory=list)
    timeouts: int = 0
    cleared: int = 0
    unhealthy_starts: int = 0
    busy_starts: int = 0  # trials whose kill came while the guest still started processes


def wait_no_new_processes(probe: Probe, *, still: float, timeout: float) -> bool:
    """Wait until the guest has started no process for ``still`` seconds: a kill is timed
    on a town that is done with the last one (a restart's mail makes every rig service
    and witness re-read the town's store: a dozen ``bd``/``gt`` runs seconds later), not
    on whatever that aftermath costs. False when the town never went still."""
    deadline = time.monotonic() + timeout
    last, _ = probe.sample()
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        current, _ = probe.sample()
        if current != last:
            last, since = current, time.monotonic()
        elif time.monotonic() - since >= still:
            return True
    return False


def crash_trials(guest: GuestSystemd, host: Host, probe: Probe, town: Town,
                 victims: Sequence[Agent], trials: int, label: str,
                 offset: int = 0) -> Trials:
    out = Trials()
    for i in range(trials):
        agent = victims[(offset + i) % len(victims)]
        missing = wait_healthy(host, town, timeout=120)
        if missing:
            out.unhealthy_starts += 1
            log(f"  {label} {i + 1}: {len(missing)} agents still down "
                f"({', '.join(a.session for a in missing[:5])}); going on")
        if agent.role == "polecat" and _backoff_active(guest, town, agent.session):
            guest.run(["gastown-units", "clear-backoff", agent.address], user=OWNER)
            out.cleared += 1
        if not wait_no_new_processes(probe, still=1.0, timeout=15.0):
            out.busy_starts += 1
        state = host.running(agent)
        if state is None:
            log(f"  {label} {i + 1}: {agent.session} is not running; skipped")
            continue
        old_pid = state[0]
        killed = probe.kill(old_pid)
        if killed is None:
            log(f"  {label} {i + 1}: {agent.session} exited before the kill; skipped")
            continue
        back: tuple[int, float] | None = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = host.running(agent)
            if state is not None and state[0] != old_pid:
                back = state
                break
            time.sleep(0.005)
        if back is None:
            out.timeouts += 1
            log(f"  {label} {i + 1}: {agent.session} not back after 120 s")
            continue
        latency = back[1] - killed
        out.latencies.append(latency)
        log(f"  {label} {i + 1}: {agent.session} back in {latency:.3f} s")
    log(f"{label}: {summary(out.latencies)} (median / p95 / max, {len(out.latencies)} "
        f"trials, {out.timeouts} timeouts, {out.cleared} backoffs cleared first)")
    return out


def latency_cell(trials: Trials) -> str:
    cell = summary(trials.latencies)
    notes = []
    if trials.timeouts:
        notes.append(f"{trials.timeouts} never back")
    if trials.cleared:
        notes.append(f"{trials.cleared} clear-backoff")
    if trials.busy_starts:
        notes.append(f"{trials.busy_starts} killed while processes still started")
    return cell + (f" ({', '.join(notes)})" if notes else "") + f" n={len(trials.latencies)}"


@contextlib.contextmanager
def cpu_load(processes: int) -> Iterator[None]:
    """``processes`` busy loops on the host, ended by PID."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(processes)]
    try:
        yield
    finally:
        for proc in busy:
            proc.kill()
            proc.wait(timeout=10)


def wait_quiet(limit: float, *, timeout: float) -> str:
    """Until the host's 1-minute load average is below ``limit`` (the issue's "quiet
    machine": load < 0.3), at most ``timeout`` seconds; the figure for the table. A cold
    start of a big town leaves the load high for a minute or two."""
    start = time.monotonic()
    reached = wait_until(lambda: os.getloadavg()[0] < limit, timeout=timeout, interval=1.0)
    load = os.getloadavg()[0]
    waited = time.monotonic() - start
    note = "" if reached else f", not below {limit:g} after {timeout:g} s"
    log(f"load average {load:.2f} after waiting {waited:.0f} s for < {limit:g}{note}")
    return f"{load:.2f} (waited {waited:.0f} s{note})"


def bench_size(deb: Path, rigs: int, polecats: int, args: argparse.Namespace) -> Result:
    result = Result()
    log(f"=== town {rigs}x{polecats}: {rigs} rigs x {polecats} polecats "
        f"(load average {os.getloadavg()[0]:.2f})")
    with contextlib.ExitStack() as stack:
        with phase(result, "boot guest + install .deb"):
            guest = stack.enter_context(GuestSystemd())
            guest.install_deb(deb)
            guest.systemctl("start", "dbus.socket")
        host = Host(guest)
        with phase(result, "build town"):
            town = build_town(guest, rigs, polecats)
        with phase(result, "setup + every agent up"):
            bring_up(guest, host, town, result)
        probe = Probe(guest)
        stack.callback(probe.close)
        with phase(result, f"idle window ({args.idle_seconds:g} s)"):
            measure_idle(guest, host, probe, town, args.idle_seconds, result)
        with phase(result, "systemd-analyze security"):
            measure_security(guest, town, result)
        with phase(result, "cold start"):
            measure_cold_start(guest, host, town, result)
        with phase(result, "crash trials, quiet"):
            result.rows["load average before the quiet trials"] = \
                wait_quiet(args.quiet_load, timeout=args.quiet_wait)
            polecats_rr = town.of_role("polecat")
            quiet = crash_trials(guest, host, probe, town, polecats_rr, args.trials,
                                 "polecat quiet")
            result.rows["polecat kill -> running, quiet"] = latency_cell(quiet)
            for role in ("deacon", "witness", "refinery"):
                got = crash_trials(guest, host, probe, town, town.of_role(role), args.trials,
                                   role)
                result.rows[f"{role} kill -> running, quiet"] = latency_cell(got)
        with phase(result, f"crash trials, {args.load} busy processes"), cpu_load(args.load):
            loaded = crash_trials(guest, host, probe, town, polecats_rr, args.trials,
                                  "polecat under load", offset=args.trials)
            result.rows[f"polecat kill -> running, {args.load} busy procs"] = \
                latency_cell(loaded)
        log(f"tearing the guest down (load average {os.getloadavg()[0]:.2f})")
    for name, took in result.phases.items():
        result.rows[f"phase: {name}"] = f"{took:.1f} s"
    return result


ROW_ORDER = (
    "agents up after setup (of all)",
    "idle PID allocations /s (guest ns_last_pid)",
    "idle processes /s (acct, exited)",
    "idle processes /s by command",
    "idle CPU, all supervisors (% of a core)",
    "  of which oneshot runs (polecat-health ...)",
)


def table(sizes: Sequence[str], results: Sequence[Result]) -> str:
    labels: list[str] = [label for label in ROW_ORDER
                         if any(label in r.rows for r in results)]
    for r in results:
        labels += [label for label in r.rows if label not in labels
                   and not label.startswith(("phase:", "exposure"))]
    for r in results:
        labels += [label for label in r.rows if label not in labels
                   and label.startswith("exposure")]
    for r in results:
        labels += [label for label in r.rows if label not in labels]
    rows = [(label, [r.rows.get(label, "") for r in results]) for label in labels]
    return format_table(list(sizes), rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("deb", type=Path)
    parser.add_argument("--sizes", nargs="+", default=["1x1", "4x6", "10x20"])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=120.0)
    parser.add_argument("--load", type=int, default=2,
                        help="busy processes on the host for the loaded polecat trials")
    parser.add_argument("--quiet-load", type=float, default=0.3,
                        help="the quiet trials wait for a 1-minute load average below this")
    parser.add_argument("--quiet-wait", type=float, default=300.0,
                        help="how long the quiet trials wait for it (s)")
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes]
    if os.geteuid() != 0:
        print("town_bench: run as root (it boots a guest systemd)", file=sys.stderr)
        return 1
    if not args.deb.is_file():
        print(f"town_bench: no such .deb: {args.deb}", file=sys.stderr)
        return 1
    results = []
    for rigs, polecats in sizes:
        results.append(bench_size(args.deb.resolve(), rigs, polecats, args))
    print(f"\n# bench.town_bench {args.deb.name}: trials {args.trials}, idle window "
          f"{args.idle_seconds:g} s, load {args.load}; latencies median / p95 / max\n")
    print(table([f"{r}x{p}" for r, p in sizes], results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
