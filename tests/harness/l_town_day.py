"""An [L] (mid-2026) town supervised end to end, as a transcript: the units on the town's
own tmux socket under [L] names, a crash restarted there, ``gt down`` respected until
``systemctl start gastown.target``, ``gt daemon status`` beside the units, and an
intermediate (0.9.0) town refused with its reason.

    sudo /usr/bin/python3 -m tests.harness.l_town_day dist/gastown-units_*.deb

Prints every command with its output and exit status; exits 1 if a step did not do what
it says. The systemd ring tests the same with assertions; this is for reading.
"""

from __future__ import annotations

import hashlib
import sys
import time

from tests.harness.guest import GuestSystemd
from tests.harness.guest_town import STANDIN_DIR, configure, new_town, tmux_panes
from tests.harness.operator_day import run_in_guest, show

OWNER = "lena"
RIGS = {"gastown": "gt", "stockdrop": "st"}
UNITS = ("gastown.target", "gastown-deacon-keeper", "gastown-lifecycle-mail",
         "gastown-polecat-health.path", "gastown-polecat-health.timer",
         "gastown-rig@gastown.target", "gastown-rig@stockdrop.target")


def panes(guest: GuestSystemd, socket: str) -> dict[str, int]:
    """Sessions on the town's socket whose pane runs the agent."""
    return {name: pid for name, (pid, command) in tmux_panes(guest, OWNER, socket).items()
            if command == "claude"}


def wait(guest: GuestSystemd, what: str, check: object, timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    print(f"(timed out after {timeout:g}s waiting for {what})")
    return False


def day(guest: GuestSystemd) -> list[str]:
    failures: list[str] = []

    def expect(ok: bool, what: str) -> None:
        print(f"--> {'ok' if ok else 'NOT OK'}: {what}", flush=True)
        if not ok:
            failures.append(what)

    town = new_town(guest, OWNER, rigs=RIGS, dialect="L")
    socket = f"gt-{hashlib.sha256(town.encode()).hexdigest()[:6]}"
    configure(guest, OWNER, {"GT_TOWN_ROOT": town, "GT_AGENT_COMMAND": f"{STANDIN_DIR}/agent",
                             "GT_INTERVAL": "2", "GT_DEGRADED": "true"})
    print(f"# an [L] town {town} of {OWNER} (rigs gastown=gt, stockdrop=st), as a mid-2026 "
          f"gt leaves it; its socket by gastown-2026.md §3.0 is {socket}")
    show(guest, f"{STANDIN_DIR}/gt", "version", user=OWNER, cwd=town)
    show(guest, "systemctl", "enable", "--now", *UNITS)
    wanted = {"hq-deacon", "gt-witness", "st-witness", "gt-refinery", "st-refinery"}
    expect(wait(guest, "agents", lambda: wanted <= set(panes(guest, socket))),
           f"hq-deacon, gt-/st-witness, gt-/st-refinery run on tmux -L {socket}")
    show(guest, "tmux", "-N", "-L", socket, "list-sessions", "-F",
         "#{session_name} #{pane_current_path}", user=OWNER)
    show(guest, "tmux", "-N", "list-sessions", user=OWNER)
    show(guest, "gastown-units", "status")
    show(guest, "journalctl", "--no-pager", "-o", "cat", "-u", "gastown-witness@stockdrop",
         "-n", "4")

    first = panes(guest, socket).get("gt-witness")
    print(f"\n# the gastown Witness agent (PID {first}) is killed")
    show(guest, "kill", "-9", str(first))
    expect(wait(guest, "restart", lambda: panes(guest, socket).get("gt-witness") not in
                (None, first)), "gt-witness is running again, on the same socket")
    show(guest, "journalctl", "--no-pager", "-o", "cat", "-u", "gastown-witness@gastown",
         "-n", "3")

    print("\n# Gas Town's own commands beside the units")
    show(guest, f"{STANDIN_DIR}/gt", "daemon", "status", user=OWNER, cwd=town)
    show(guest, f"{STANDIN_DIR}/gt", "down", user=OWNER, cwd=town)
    time.sleep(8)  # a reading pause: several passes of every keeper (GT_INTERVAL=2)
    down = set(panes(guest, socket)) & wanted
    expect(not down, "after gt down and 8 s of passes, no agent was started again")
    show(guest, "gastown-units", "status")
    show(guest, "systemctl", "start", "gastown.target")
    expect(wait(guest, "resume", lambda: wanted <= set(panes(guest, socket))),
           "systemctl start gastown.target brings the agents back")

    print("\n# an intermediate town: a gt 0.9.0 (the 0.6-0.12 mix)")
    guest.write_file(f"{town}/.standin/gt.version", "0.9.0\n", owner=OWNER)
    guest.run(["rm", "-f", f"{town}/daemon/units/gt-version.json"])
    show(guest, f"{STANDIN_DIR}/gt", "version", user=OWNER, cwd=town)
    show(guest, "systemctl", "restart", "gastown-witness@gastown")
    wait(guest, "refusal", lambda: guest.show("gastown-witness@gastown.service",
                                              "ActiveState")["ActiveState"] == "failed",
         timeout=30)
    state = guest.show("gastown-witness@gastown.service", "ActiveState", "Result",
                       "ExecMainStatus")
    expect(state["ActiveState"] == "failed" and state["ExecMainStatus"] == "78",
           "the Witness refuses the town with exit 78")
    show(guest, "journalctl", "--no-pager", "-o", "cat", "-u", "gastown-witness@gastown",
         "-g", "cannot tell")
    show(guest, "gastown-units", "doctor")
    return failures


def main() -> int:
    return run_in_guest(day, "l_town_day", __doc__)


if __name__ == "__main__":
    sys.exit(main())
