"""``gastown-units doctor`` in a real systemd guest with the .deb installed and a town
configured as the README says: healthy (exit 0, every line ✓, as root and as the owner),
then broken one way at a time — each breakage fails its check with its fix (exit 1) — and
repaired before the next. The tests run in file order on one guest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.harness.guest import GuestSystemd
from tests.harness.guest_town import STANDIN_DIR, configure, new_town, tmux_panes

OWNER = "dora"
RIG = "myrig"
TMUX = "gastown-tmux.service"
FAKE_DAEMON = "fake-gt-daemon.service"


def settings(town: str, path: str = "/usr/local/bin:/usr/bin:/bin") -> dict[str, str]:
    return {"GT_TOWN_ROOT": town, "GT_AGENT_COMMAND": f"{STANDIN_DIR}/agent",
            "GT_INTERVAL": "2", "PATH": path}


@pytest.fixture(scope="module")
def town(guest: GuestSystemd) -> Iterator[str]:
    path = new_town(guest, OWNER, rigs={RIG: "mr"})
    configure(guest, OWNER, settings(path))
    guest.systemctl("start", "dbus.socket")  # the owner's systemctl talks to PID 1 through it
    guest.systemctl("enable", "--now", "gastown-deacon-keeper", "gastown-lifecycle-mail",
                    "gastown-polecat-health.path", "gastown-polecat-health.timer",
                    f"gastown-rig@{RIG}.target")
    for session in ("hq-deacon", f"gt-{RIG}-witness", f"gt-{RIG}-refinery"):
        _wait_agent(guest, session)
    yield path
    guest.systemctl("stop", FAKE_DAEMON, "gastown.target", check=False)


def _wait_agent(guest: GuestSystemd, session: str) -> int:
    def running() -> int | None:
        pane = tmux_panes(guest, OWNER).get(session)
        return pane[0] if pane and pane[1] == "claude" else None
    return guest.wait_for(running, timeout=90, what=f"{session} running the agent")


def doctor(guest: GuestSystemd, user: str | None = None) -> tuple[int, list[str]]:
    result = guest.run(["gastown-units", "doctor"], user=user, check=False, timeout=120)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result.returncode, result.stdout.splitlines()


def failed(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("✗")]


def fails_with(guest: GuestSystemd, expected: str, fix: str) -> list[str]:
    """Doctor exits 1; ``expected`` starts one ✗ line, followed by a fix containing ``fix``."""
    code, lines = doctor(guest)
    assert code == 1, lines
    hits = [i for i, line in enumerate(lines) if line.startswith(f"✗ {expected}")]
    assert hits, "\n".join(lines)
    assert lines[hits[0] + 1].startswith("    fix: ") and fix in lines[hits[0] + 1], lines
    return lines


def healthy(guest: GuestSystemd) -> list[str]:
    """Doctor passes; polled, since a repair (a restart, a sweep) settles in a moment."""
    def passes() -> list[str] | None:
        code, lines = doctor(guest)
        return lines if code == 0 and not failed(lines) else None
    try:
        return guest.wait_for(passes, timeout=90, interval=1, what="doctor passing")
    except AssertionError:
        _code, lines = doctor(guest)
        raise AssertionError("doctor does not pass:\n" + "\n".join(lines)) from None


def test_healthy_town_passes_as_root_and_as_the_owner(guest: GuestSystemd, town: str) -> None:
    lines = healthy(guest)
    print("\n".join(lines))  # the figures (exposure) for the log
    assert all(line.startswith(("✓", "    ")) for line in lines), lines
    assert f"✓ town {town} readable (1 rig)" in lines
    assert f"✓ {TMUX} runs as the owner ({OWNER})" in lines
    assert f"✓ rig {RIG}: gastown-rig@{RIG}.target enabled" in lines
    assert "✓ event hooks installed (session-closed[77], pane-died[77])" in lines
    assert any(line.startswith("✓ gastown-witness@myrig.service exposure ") for line in lines)
    code, lines = doctor(guest, user=OWNER)
    assert code == 0 and not failed(lines), "\n".join(lines)


# Every unit that runs our code in the sandbox: the supervisors and the helpers (not the
# tmux host, which is deliberately unsandboxed: the agents inherit its sandbox).
FAILED = f"gastown-witness@{RIG}.service"
SANDBOXED = ("gastown-deacon-keeper.service", "gastown-lifecycle-mail.service",
             "gastown-polecat-health.service", f"gastown-witness@{RIG}.service",
             f"gastown-refinery@{RIG}.service", f"gastown-failed@{FAILED}.service",
             "gastown-resume.service", "gastown-rigs.service")


def test_every_sandboxed_unit_has_exposure_at_most_4(guest: GuestSystemd, town: str) -> None:
    """The exposure figure is a score of the unit's settings (owner drop-in included),
    not a timing: each one at most EXPOSURE_MAX (4.0), also doctor's limit."""
    from gastown_units.doctor_checks import EXPOSURE_MAX, parse_exposure

    assert EXPOSURE_MAX == 4.0
    figures: dict[str, float | None] = {}
    for unit in SANDBOXED:
        result = guest.run(["systemd-analyze", "security", "--no-pager", unit], check=False)
        figures[unit] = parse_exposure(result.stdout)
    print("\n".join(f"exposure {unit}: {figure}" for unit, figure in figures.items()))
    assert all(f is not None and f <= EXPOSURE_MAX for f in figures.values()), figures
    tmux = guest.run(["systemd-analyze", "security", "--no-pager", TMUX], check=False)
    print(f"exposure {TMUX} (unsandboxed on purpose): {parse_exposure(tmux.stdout)}")


def test_the_sandbox_keeps_the_town_writable_and_the_rest_read_only(
        guest: GuestSystemd, town: str) -> None:
    """The deacon keeper's file-system settings, as loaded (owner drop-in included), and a
    transient unit run with them as the owner: the town and /tmp writable, the system
    (/etc, /usr) read-only."""
    props = guest.show("gastown-deacon-keeper.service", "ReadWritePaths", "ProtectSystem",
                       "ProtectHome", "PrivateTmp", "CapabilityBoundingSet")
    assert props["ProtectSystem"] == "strict" and props["ProtectHome"] == "read-only", props
    assert props["PrivateTmp"] == "no", props
    paths = props["ReadWritePaths"].split()
    assert f"-{town}" in paths and "/tmp" in paths and "-/home" in paths, props
    script = (f"touch {town}/daemon/.sandbox-probe && rm {town}/daemon/.sandbox-probe && "
              "touch /tmp/.sandbox-probe && rm /tmp/.sandbox-probe && "
              "! touch /usr/.sandbox-probe 2>/dev/null && "
              "! touch /etc/.sandbox-probe 2>/dev/null && echo sandbox-ok")
    result = guest.run(["systemd-run", "--wait", "--pipe", "--quiet", "-p",
                        "ProtectSystem=strict", "-p", "ProtectHome=read-only",
                        "-p", f"ReadWritePaths={props['ReadWritePaths']}",
                        "-p", f"CapabilityBoundingSet={props['CapabilityBoundingSet']}",
                        "/bin/sh", "-c", script], check=False, timeout=60)
    assert result.stdout.strip() == "sandbox-ok", (result.stdout, result.stderr)


def test_bd_not_on_the_units_path(guest: GuestSystemd, town: str) -> None:
    configure(guest, OWNER, settings(town, path="/usr/bin:/bin"))
    try:
        fails_with(guest, "bd not on the units' PATH (/usr/bin:/bin)",
                   "add the directory of bd to PATH in /etc/gastown/gastown.conf")
    finally:
        configure(guest, OWNER, settings(town))
    healthy(guest)


def test_a_rigs_target_disabled(guest: GuestSystemd, town: str) -> None:
    guest.systemctl("disable", f"gastown-rig@{RIG}.target")
    try:
        fails_with(guest, f"rig {RIG} not enabled",
                   f"systemctl enable --now gastown-rig@{RIG}.target")
    finally:
        guest.systemctl("enable", "--now", f"gastown-rig@{RIG}.target")
    healthy(guest)


def test_a_corrupt_restart_state_set_aside(guest: GuestSystemd, town: str) -> None:
    state = f"{town}/daemon/restart_state.json"
    guest.write_file(state, "{ corrupt", owner=OWNER)
    guest.systemctl("start", "gastown-polecat-health.service")  # a sweep sets it aside
    guest.wait_for(lambda: guest.run(["test", "-e", state + ".bad"], check=False)
                   .returncode == 0, timeout=60, what="restart_state.json set aside")
    fails_with(guest, "1 state file set aside as corrupt: " + state + ".bad",
               "remove the .bad files")
    guest.run(["rm", "-f", state + ".bad"])
    healthy(guest)


def test_an_agent_in_a_crash_loop(guest: GuestSystemd, town: str) -> None:
    agent = f"gt-{RIG}-nux"
    guest.write_file(f"{town}/daemon/restart_state.json", json.dumps({"agents": {agent: {
        "last_restart": "2026-01-01T00:00:00Z", "restart_count": 5,
        "backoff_until": "2026-01-01T00:00:00Z",
        "crash_loop_since": "2026-01-01T00:00:00Z"}}}), owner=OWNER)
    fails_with(guest, f"{agent} is in a crash loop", f"gastown-units clear-backoff {agent}")
    guest.run(["gastown-units", "clear-backoff", agent], user=OWNER)  # the fix it gives
    healthy(guest)


def test_a_failed_unit(guest: GuestSystemd, town: str) -> None:
    unit = "gastown-witness@nosuchrig.service"
    guest.systemctl("start", unit, check=False)
    guest.wait_for(lambda: guest.show(unit, "ActiveState")["ActiveState"] == "failed",
                   timeout=30, what=f"{unit} failed")
    fails_with(guest, f"{unit} failed", f"systemctl reset-failed {unit}")
    guest.systemctl("reset-failed", unit)
    healthy(guest)


def test_a_gt_daemon_beside_us(guest: GuestSystemd, town: str) -> None:
    guest.write_file("/usr/local/lib/fake-gt/gt", "import time\ntime.sleep(3600)\n")
    guest.run(["systemd-run", f"--unit={FAKE_DAEMON}", "--", "/usr/bin/python3",
               "/usr/local/lib/fake-gt/gt", "daemon", "run"])
    try:
        guest.wait_for(lambda: guest.show(FAKE_DAEMON, "ActiveState")["ActiveState"]
                       == "active", timeout=30, what="the fake gt daemon running")
        fails_with(guest, "gt daemon runs beside the units: PID", "gt daemon stop")
    finally:
        guest.systemctl("stop", FAKE_DAEMON, check=False)
    healthy(guest)


def test_event_hooks_removed(guest: GuestSystemd, town: str) -> None:
    for hook in ("session-closed[77]", "pane-died[77]"):
        guest.run(["tmux", "-N", "set-hook", "-gu", hook], user=OWNER)
    fails_with(guest, "event hooks missing: session-closed[77], pane-died[77]",
               f"as {OWNER}: gastown-units tmux-ready --event-file /run/gastown-tmux/events")
    guest.run(["gastown-units", "tmux-ready", "--event-file", "/run/gastown-tmux/events"],
              user=OWNER)  # the fix it gives
    healthy(guest)


def test_tmux_host_stopped(guest: GuestSystemd, town: str) -> None:
    guest.systemctl("stop", TMUX)
    try:
        lines = fails_with(guest, f"{TMUX} is inactive", f"systemctl start {TMUX}")
        assert any(line.startswith("✗ tmux server at ") for line in lines), lines
    finally:
        guest.systemctl("start", TMUX)
    _wait_agent(guest, "hq-deacon")
    healthy(guest)
