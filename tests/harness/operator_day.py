"""The operator's day in a fresh guest, as a transcript: install the .deb, ``setup`` alone,
``status``, ``doctor``, ``capture``/``logs``/``attach``, ``hold``/``release``, a rig added
to ``rigs.json``, a ``gastown.target`` restart, and a crash loop told to ``mayor/``.

    sudo /usr/bin/python3 -m tests.harness.operator_day dist/gastown-units_*.deb

Prints every command with its output and exit status; exits 1 if a step did not do what
it says. The systemd ring tests the same steps with assertions; this is for reading.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from tests.harness.guest import GuestSystemd
from tests.harness.guest_town import (
    STANDIN_DIR,
    add_polecat_with_work,
    new_town,
    tmux_panes,
)

OWNER = "alice"
RIG = "gastown"


def show(guest: GuestSystemd, *argv: str, user: str | None = None, cwd: str = "/") -> int:
    prompt = f"{user or 'root'}$"
    print(f"\n{prompt} {' '.join(argv)}", flush=True)
    result = guest.run(["sh", "-c", 'cd "$0" && exec "$@"', cwd, *argv], user=user,
                       check=False, timeout=180)
    text = (result.stdout + result.stderr).rstrip()
    if text:
        print(text)
    print(f"[exit {result.returncode}]", flush=True)
    return result.returncode


def day(guest: GuestSystemd) -> list[str]:
    """The whole day in a booted guest with the package installed; the steps not ok."""
    failures: list[str] = []

    def expect(ok: bool, what: str) -> None:
        print(f"--> {'ok' if ok else 'NOT OK'}: {what}", flush=True)
        if not ok:
            failures.append(what)

    guest.systemctl("start", "dbus.socket")
    town = new_town(guest, OWNER, rigs={RIG: "gt"})
    add_polecat_with_work(guest, OWNER, town, RIG, "nux")
    guest.run(["ln", "-sf", f"{STANDIN_DIR}/agent", "/usr/local/bin/claude"])
    print(f"# a fresh guest: the .deb installed, town {town} of {OWNER}, rig {RIG}, "
          "polecat nux with hooked work; gt, bd and claude on alice's PATH")
    expect(show(guest, "gastown-units", "setup", "--town", town, "--user", OWNER,
                "--dry-run") == 0, "setup --dry-run")
    expect(show(guest, "gastown-units", "setup", "--town", town, "--user", OWNER) == 0,
           "setup")
    sessions = {"hq-deacon", f"gt-{RIG}-witness", f"gt-{RIG}-refinery", f"gt-{RIG}-nux"}
    guest.wait_for(lambda: sessions <= set(tmux_panes(guest, OWNER)), timeout=120,
                   what="every agent")
    expect(show(guest, "systemctl", "is-active", "gastown.target") == 0,
           "gastown.target active")
    guest.wait_for(lambda: guest.run(["gastown-units", "status"], check=False)
                   .returncode == 0, timeout=60, what="status exit 0")
    expect(show(guest, "gastown-units", "status") == 0, "status as root")
    expect(show(guest, "gastown-units", "status", user=OWNER) == 0, "status as owner")
    expect(show(guest, "gastown-units", "doctor") == 0, "doctor")
    show(guest, "gastown-units", "capture", f"{RIG}/nux", "-n", "5")
    show(guest, "gastown-units", "logs", f"{RIG}/nux", "-n", "5")
    show(guest, "gastown-units", "attach", "deacon/")
    expect(show(guest, "gastown-units", "hold", f"{RIG}/nux", "--reason",
                "looking at it") == 0, "hold")
    pid = tmux_panes(guest, OWNER)[f"gt-{RIG}-nux"][0]
    show(guest, "tmux", "kill-session", "-t", f"=gt-{RIG}-nux", user=OWNER)
    guest.run(["systemctl", "start", "gastown-polecat-health.service"], check=False)
    expect(f"gt-{RIG}-nux" not in tmux_panes(guest, OWNER),
           "a held polecat stays down after a sweep")
    show(guest, "gastown-units", "status")
    expect(show(guest, "gastown-units", "release", f"{RIG}/nux") == 0, "release")
    # Its first start counted as a restart (30 s backoff): let it go now.
    show(guest, "gastown-units", "clear-backoff", f"{RIG}/nux")
    guest.run(["systemctl", "start", "gastown-polecat-health.service"], check=False)
    new = guest.wait_for(lambda: (p := tmux_panes(guest, OWNER).get(f"gt-{RIG}-nux"))
                         and p[0] != pid and p[0], timeout=120, what="nux restarted")
    print(f"# nux back with PID {new} after release")
    show(guest, "journalctl", "--no-pager", f"GT_AGENT={RIG}/nux", "-n", "6",
         "-o", "short-iso")
    print("\n# a rig added with gt rig add: its services follow")
    data = json.loads(guest.read_file(f"{town}/mayor/rigs.json"))
    data["rigs"]["beads"] = {**data["rigs"][RIG], "beads": {"repo": "", "prefix": "bd"}}
    guest.run(["mkdir", "-p", f"{town}/beads/witness", f"{town}/beads/refinery/rig",
               f"{town}/beads/polecats"], user=OWNER)
    guest.write_file(f"{town}/mayor/rigs.json", json.dumps(data, indent=2), owner=OWNER)
    guest.wait_for(lambda: guest.show("gastown-witness@beads.service", "ActiveState")
                   ["ActiveState"] == "active", timeout=60, what="beads witness")
    show(guest, "journalctl", "--no-pager", "-u", "gastown-rigs.service", "-n", "4")
    print("\n# gastown.target restart: every rig's services back, the tmux host untouched")
    tmux_pid = guest.show("gastown-tmux.service", "MainPID")["MainPID"]
    before = {s: p[0] for s, p in tmux_panes(guest, OWNER).items()}
    show(guest, "systemctl", "restart", "gastown.target")
    guest.wait_for(lambda: all(guest.show(u, "ActiveState")["ActiveState"] == "active"
                               for u in (f"gastown-witness@{RIG}.service",
                                         "gastown-witness@beads.service",
                                         f"gastown-refinery@{RIG}.service")),
                   timeout=60, what="rig services back")
    show(guest, "systemctl", "list-units", "--no-pager", "gastown*")
    after = {s: p[0] for s, p in tmux_panes(guest, OWNER).items()}
    expect(guest.show("gastown-tmux.service", "MainPID")["MainPID"] == tmux_pid,
           "tmux host kept its PID")
    expect(all(after.get(s) == p for s, p in before.items()),
           "every agent kept its PID across the target restart")
    guest.wait_for(lambda: guest.run(["gastown-units", "status"], check=False)
                   .returncode == 0, timeout=90, what="status exit 0 again")
    expect(show(guest, "gastown-units", "status") == 0, "status after the restart")
    crash_loop(guest, town, expect)
    return failures


def crash_loop(guest: GuestSystemd, town: str, expect: Callable[[bool, str], None]) -> None:
    """A polecat that keeps dying enters a crash loop: one mail to mayor/, shown by status
    and doctor, ended by clear-backoff."""
    print("\n# nux keeps crashing (no backoff, a loop after 2 restarts, for the demo)")
    conf = guest.read_file("/etc/gastown/gastown.conf")
    guest.write_file("/etc/gastown/gastown.conf",
                     conf + "GT_RESTART_BACKOFF=0\nGT_CRASH_LOOP_RESTARTS=2\n")
    show(guest, "gastown-units", "clear-backoff", f"{RIG}/nux")
    for _ in range(4):
        pane = tmux_panes(guest, OWNER).get(f"gt-{RIG}-nux")
        if pane is not None:
            guest.run(["tmux", "-N", "kill-session", "-t", f"=gt-{RIG}-nux"], user=OWNER,
                      check=False)
        guest.run(["systemctl", "start", "gastown-polecat-health.service"], check=False)
    mails = mayor_mail(guest, town)
    show(guest, f"{STANDIN_DIR}/gt", "mail", "inbox", "--identity", "mayor/", user=OWNER,
         cwd=town)
    expect(sum(m.startswith("CRASH_LOOP") for m in mails) == 1,
           "one CRASH_LOOP mail to mayor/")
    expect(show(guest, "gastown-units", "status") == 1, "status fails on the crash loop")
    expect(show(guest, "gastown-units", "doctor") == 1, "doctor fails on the crash loop")
    show(guest, "journalctl", "--no-pager", "-x", f"GT_AGENT={RIG}/nux", "GT_EVENT=crash-loop",
         "-n", "1")
    show(guest, "gastown-units", "clear-backoff", f"{RIG}/nux")
    guest.write_file("/etc/gastown/gastown.conf", conf)


def mayor_mail(guest: GuestSystemd, town: str) -> list[str]:
    inbox = f"cd {town} && {STANDIN_DIR}/gt mail inbox --identity mayor/ --json"
    out = guest.run(["sh", "-c", inbox], user=OWNER).stdout
    return [m["subject"] for m in json.loads(out) or []]


def run_in_guest(day_of: Callable[[GuestSystemd], list[str]], name: str, doc: str | None
                 ) -> int:
    """Boot a guest, install the .deb given on the command line, run ``day_of`` in it."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("deb", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print(f"{name}: run as root", file=sys.stderr)
        return 1
    with GuestSystemd() as guest:
        guest.install_deb(args.deb)
        failures = day_of(guest)
    print(f"\n{len(failures)} step(s) not ok: {failures}" if failures else "\nall steps ok")
    return 1 if failures else 0


def main() -> int:
    return run_in_guest(day, "operator_day", __doc__)


if __name__ == "__main__":
    sys.exit(main())
