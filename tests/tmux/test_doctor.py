"""``gastown-units doctor`` against a real (private) tmux server and a test town: the
checks that need no systemd, healthy and then broken one way at a time.

The checks of systemd units are left out (the systemd ring has them); every other line
must be ✓, and each breakage adds exactly its own ✗ with a fix. Two private tmux servers in a
private ``TMUX_TMPDIR``: ``ours`` (the configured socket, with the event hooks set by
``gastown-units tmux-ready``) and ``theirs`` (another server of the same user).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.keeper import REPO, service_env
from tests.harness.poll import poll_until, wait_gone
from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import AGENT, STANDINS


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gtu-doc-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def servers(socket_dir: Path) -> Iterator[tuple[PrivateTmux, PrivateTmux]]:
    ours, theirs = PrivateTmux(socket_dir, "ours"), PrivateTmux(socket_dir, "theirs")
    try:
        yield ours.start(), theirs.start()
    finally:
        ours.stop()
        theirs.stop()


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    """A directory with the stand-in bd and gt: the units' PATH gets it."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("bd", "gt"):
        (bindir / tool).symlink_to(STANDINS / tool)
    return bindir


def write_conf(path: Path, town: Path, bindir: Path | None) -> None:
    dirs = ([str(bindir)] if bindir else []) + ["/usr/bin", "/bin"]
    path.write_text(f"GT_TOWN_ROOT={town}\nGT_TMUX_SOCKET=ours\nGT_AGENT_COMMAND={AGENT}\n"
                    f"PATH={':'.join(dirs)}\n", encoding="utf-8")


# Checks about systemd units: on a machine whose PID 1 is systemd they judge the host's
# units, which this test does not set up, so they are left out of every assertion.
SYSTEMD_CHECKS = ("systemd", "tmux-host", "tmux-owner", "units", "unit-", "rig-",
                  "hardening", "sandbox-", "gt-daemon-unit")


def doctor(conf: Path, socket_dir: Path, *args: str) -> tuple[int, list[str]]:
    """Doctor's exit code and its report without the systemd checks (from ``--json``)."""
    env = service_env({"GT_CONFIG": str(conf), "TMUX_TMPDIR": str(socket_dir)})
    result = subprocess.run([sys.executable, "-m", "gastown_units", "doctor", "--json",
                             *args], capture_output=True, text=True, timeout=120, env=env,
                            cwd=REPO)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = []
    for row in map(json.loads, result.stdout.splitlines()):
        if row["check"].startswith(SYSTEMD_CHECKS):
            continue
        lines.append({True: "✓", False: "✗", None: "-"}[row["ok"]] + " " + row["detail"])
        if row["ok"] is False:
            lines.append("    fix: " + row["fix"])
    return result.returncode, lines


def failures(lines: list[str]) -> list[str]:
    """The ✗ lines (each with its fix line)."""
    out = []
    for i, line in enumerate(lines):
        if line.startswith("✗"):
            assert lines[i + 1].startswith("    fix: "), lines
            out.append(line)
    return out


def test_doctor_without_systemd(town: Path, servers: tuple[PrivateTmux, PrivateTmux],
                                socket_dir: Path, tools: Path, tmp_path: Path) -> None:
    ours, theirs = servers
    conf = tmp_path / "gastown.conf"
    write_conf(conf, town, tools)
    env = service_env({"GT_CONFIG": str(conf), "TMUX_TMPDIR": str(socket_dir)})
    subprocess.run([sys.executable, "-m", "gastown_units", "tmux-ready", "--event-file",
                    str(tmp_path / "events")], check=True, env=env, cwd=REPO, timeout=60)
    ours.tmux("new-session", "-d", "-s", "hq-deacon", "-c", str(town / "deacon"),
              f"exec {sys.executable} {AGENT}")

    code, lines = doctor(conf, socket_dir)
    assert failures(lines) == [], lines
    if not Path("/run/systemd/system").exists():
        assert code == 1  # "systemd not running here" is the one ✗
    assert f"✓ town {town} readable (1 rig)" in lines
    assert f"✓ bd on the units' PATH: {tools / 'bd'}" in lines
    assert "✓ event hooks installed (session-closed[77], pane-died[77])" in lines
    assert "✓ 1 agent session of the town on this server, none on another server of the " \
           "owner" in lines

    # bd not on the units' PATH (the caller's PATH does not count)
    write_conf(conf, town, None)
    code, lines = doctor(conf, socket_dir)
    assert failures(lines) == ["✗ bd not on the units' PATH (/usr/bin:/bin)",
                               "✗ gt not on the units' PATH (/usr/bin:/bin)"] or \
        failures(lines) == ["✗ gt not on the units' PATH (/usr/bin:/bin)",
                            "✗ bd not on the units' PATH (/usr/bin:/bin)"], lines
    assert any("fix: add the directory of bd to PATH in" in line for line in lines)
    write_conf(conf, town, tools)

    # the event hooks removed
    for hook, flag in (("session-closed[77]", "-gu"), ("pane-died[77]", "-gu")):
        ours.tmux("set-hook", flag, hook)
    code, lines = doctor(conf, socket_dir)
    assert failures(lines) == ["✗ event hooks missing: session-closed[77], pane-died[77]"]
    subprocess.run([sys.executable, "-m", "gastown_units", "tmux-ready", "--event-file",
                    str(tmp_path / "events")], check=True, env=env, cwd=REPO, timeout=60)

    # a state file set aside, an agent in a crash loop (read only: nothing renamed)
    bad = town / "daemon" / "units" / "witness-gastown.json.bad"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text("{", encoding="utf-8")
    state = town / "daemon" / "restart_state.json"
    state.write_text(json.dumps({"agents": {"gt-gastown-nux": {
        "restart_count": 5, "crash_loop_since": "2026-01-01T00:00:00Z"}}}), encoding="utf-8")
    code, lines = doctor(conf, socket_dir)
    assert failures(lines) == [
        "✗ gt-gastown-nux is in a crash loop: no more restarts",
        f"✗ 1 state file set aside as corrupt: {bad}"], lines
    assert "    fix: find why it crashes (journalctl GT_AGENT=...), then gastown-units " \
           "clear-backoff gt-gastown-nux" in lines
    state.write_text("{ corrupt", encoding="utf-8")
    code, lines = doctor(conf, socket_dir)
    assert any(line.startswith("✗ restart state unreadable") for line in lines)
    assert state.exists() and not state.with_name(state.name + ".bad").exists()
    state.unlink()
    bad.unlink()

    # a gt daemon beside us
    gt_daemon = _fake_gt_daemon(tmp_path)
    try:
        code, lines = doctor(conf, socket_dir)
        assert len(failures(lines)) == 1, lines
        assert failures(lines)[0].startswith(
            f"✗ gt daemon runs beside the units: PID {gt_daemon.pid}: "), lines
        assert "    fix: gt daemon stop" in "\n".join(lines)
    finally:
        gt_daemon.kill()
        gt_daemon.wait(timeout=30)

    # gt daemon's exclusive lock on daemon/daemon.lock, whatever its command line
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(town / "daemon" / "daemon.lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None and locker.stdout.readline() == "locked\n"
        code, lines = doctor(conf, socket_dir)
        assert len(failures(lines)) == 1, lines
        assert failures(lines)[0].startswith(
            f"✗ gt daemon runs beside the units: PID {locker.pid} holds "
            f"{town / 'daemon' / 'daemon.lock'} exclusively"), lines
    finally:
        locker.kill()
        locker.wait(timeout=30)

    # a split town: an agent of the town runs on the other server
    theirs.tmux("new-session", "-d", "-s", "gt-boot", "-c", str(town / "deacon"),
                "sleep 600")
    code, lines = doctor(conf, socket_dir)
    assert failures(lines) == [
        f"✗ split town: gt-boot run on tmux server {theirs.path}, not on {ours.path}"], lines
    assert any("fix: set GT_TMUX_SOCKET=theirs in" in line for line in lines)

    # the configured server down
    pid = ours.pane("hq-deacon")
    ours.stop()
    if pid:
        wait_gone(pid[0], timeout=30)
    code, lines = doctor(conf, socket_dir)
    assert code == 1
    assert failures(lines) == [f"✗ tmux server at {ours.path} does not answer: no server "
                               "running", f"✗ split town: gt-boot run on tmux server "
                               f"{theirs.path}, not on {ours.path}"], lines
    assert any(line.startswith("    fix: systemctl start gastown-tmux.service") for line in lines)


LOCKER = """
import fcntl, sys, time
handle = open(sys.argv[1], "a")
fcntl.flock(handle, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


def _fake_gt_daemon(tmp_path: Path) -> subprocess.Popen[bytes]:
    """A process whose command line is ``<dir>/gt daemon run`` (python3 runs it)."""
    script = tmp_path / "fakebin" / "gt"
    script.parent.mkdir()
    script.write_text("import time\ntime.sleep(600)\n", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(script), "daemon", "run"])
    poll_until(lambda: os.path.exists(f"/proc/{proc.pid}/cmdline") and
               b"daemon" in Path(f"/proc/{proc.pid}/cmdline").read_bytes(),
               timeout=10, what="the fake gt daemon running")
    return proc
