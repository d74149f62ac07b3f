"""The demo: a Gas Town with stand-in agents, supervised by the installed .deb.

Boots a guest systemd over an overlay of this machine (nothing on the host changes),
installs the package, creates the town owner ``alice`` and a town, enables the Deacon
keeper the way the README's manual steps say (and the rest with ``gastown-units setup``),
then shows what an operator would see and breaks things
on purpose: a crashed agent, ``kill -9`` of the supervisor, a hung supervisor.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tests.harness.guest import GuestSystemd
from tests.harness.guest_town import (
    STANDIN_DIR,
    add_polecat_with_work,
    configure,
    new_town,
    tmux_panes,
)

OWNER = "alice"
UNIT = "gastown-deacon-keeper.service"


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def show(guest: GuestSystemd, *argv: str, user: str | None = None) -> str:
    print(f"$ {' '.join(argv)}", flush=True)
    out = guest.run(list(argv), check=False, user=user)
    text = (out.stdout + out.stderr).rstrip()
    print(text, flush=True)
    return text


def deacon_pid(guest: GuestSystemd, differs_from: int | None = None) -> int:
    def probe() -> int | None:
        pane = tmux_panes(guest, OWNER).get("hq-deacon")
        return pane[0] if pane and pane[1] == "claude" and pane[0] != differs_from else None
    return guest.wait_for(probe, timeout=90, interval=0.05, what="hq-deacon")


def polecat_pid(guest: GuestSystemd, differs_from: int | None = None) -> int:
    def probe() -> int | None:
        pane = tmux_panes(guest, OWNER).get("gt-gastown-nux")
        return pane[0] if pane and pane[1] == "claude" and pane[0] != differs_from else None
    return guest.wait_for(probe, timeout=90, interval=0.05, what="gt-gastown-nux")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("deb", type=Path, help="the built gastown-units .deb")
    parser.add_argument("--keep", action="store_true",
                        help="leave the guest running until Enter is pressed")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("demo: run as root (it boots a guest systemd)", file=sys.stderr)
        return 1
    with GuestSystemd() as guest:
        say("guest systemd booted over an overlay root (host untouched); installing the .deb")
        guest.install_deb(args.deb)
        town = new_town(guest, OWNER, rigs={"gastown": "gt"})
        add_polecat_with_work(guest, OWNER, town, "gastown", "nux")
        say(f"town {town} owned by {OWNER} (rig gastown, polecat nux with hooked work); "
            "configuring as README.md says")
        # The demo crashes one polecat three times in a row: no restart backoff (the
        # default is 30 s, doubling) so that each crash shows the event path's speed.
        configure(guest, OWNER, {"GT_TOWN_ROOT": town,
                                 "GT_AGENT_COMMAND": f"{STANDIN_DIR}/agent",
                                 "GT_INTERVAL": "2", "GT_RESTART_BACKOFF": "0"})
        show(guest, "cat", "/etc/gastown/gastown.conf",
             "/etc/systemd/system/gastown-.service.d/owner.conf")
        show(guest, "systemctl", "enable", "--now", UNIT)
        first = deacon_pid(guest)
        show(guest, "systemctl", "status", "--no-pager", "-n", "0", UNIT)
        show(guest, "tmux", "ls", user=OWNER)
        show(guest, "tmux", "capture-pane", "-p", "-t", "=hq-deacon:", "-S", "-8", user=OWNER)

        say("the Deacon's agent crashes (kill -9 of its process)")
        started = time.monotonic()
        guest.run(["kill", "-9", str(first)])
        second = deacon_pid(guest, differs_from=first)
        print(f"hq-deacon back in {time.monotonic() - started:.1f}s "
              f"(agent PID {first} -> {second})")

        say("the supervisor is killed with SIGKILL; systemd restarts it, the agent stays")
        main_pid = guest.show(UNIT, "MainPID")["MainPID"]
        guest.run(["kill", "-9", main_pid])
        guest.wait_for(lambda: guest.show(UNIT, "NRestarts")["NRestarts"] != "0",
                       timeout=60, what="restart")
        print(f"NRestarts={guest.show(UNIT, 'NRestarts')['NRestarts']}, "
              f"agent PID still {deacon_pid(guest)}")

        say("systemctl restart and stop leave the agent running")
        show(guest, "systemctl", "restart", UNIT)
        show(guest, "systemctl", "stop", UNIT)
        print(f"agent PID still {deacon_pid(guest)}")
        show(guest, "systemctl", "start", UNIT)

        say("the rest of the town in one command: gastown-units setup (rig services, "
            "polecat health, lifecycle mail, rigs that follow mayor/rigs.json)")
        show(guest, "gastown-units", "setup", "--town", town, "--user", OWNER)
        polecat = polecat_pid(guest)
        guest.wait_for(lambda: {"gt-gastown-witness", "gt-gastown-refinery"} <= set(
            tmux_panes(guest, OWNER)), timeout=90, what="rig agents")
        show(guest, "sh", "-c", f"cd {town} && gastown-units status", user=OWNER)

        say("a polecat with hooked work crashes: the tmux hook wakes polecat-health")
        for _ in range(3):
            started = time.monotonic()
            guest.run(["kill", "-9", str(polecat)])
            new = polecat_pid(guest, differs_from=polecat)
            print(f"gt-gastown-nux back in {time.monotonic() - started:.2f}s "
                  f"(agent PID {polecat} -> {new})")
            polecat = new

        say("the Witness asks for a cycle: LIFECYCLE mail, processed at once on reload")
        witness = tmux_panes(guest, OWNER)["gt-gastown-witness"][0]
        guest.run(["sh", "-c", 'cd "$1" && /usr/local/bin/gt standin seed-mail --to deacon/ --from '
                   'gastown/witness -s "LIFECYCLE: gastown/witness requesting cycle" '
                   "-m '{\"action\":\"cycle\"}'", "seed", town], user=OWNER)
        show(guest, "systemctl", "reload", "gastown-lifecycle-mail")
        guest.wait_for(lambda: tmux_panes(guest, OWNER).get("gt-gastown-witness", (witness,))[0]
                       != witness, timeout=60, what="witness cycled")
        print(f"gt-gastown-witness cycled (pane PID {witness} -> "
              f"{tmux_panes(guest, OWNER)['gt-gastown-witness'][0]})")

        say("journalctl GT_RIG=gastown (the rig's story) and GT_ROLE=deacon")
        show(guest, "journalctl", "--no-pager", "GT_RIG=gastown", "-n", "12")
        show(guest, "journalctl", "--no-pager", "GT_ROLE=polecat", "-n", "8")
        show(guest, "systemctl", "list-units", "--no-pager", "gastown*")
        show(guest, "systemctl", "list-units", "--failed", "--no-pager", "gastown*")
        if args.keep:
            print(f"\nThe guest is running. Enter it with:\n"
                  f"  nsenter -t {guest.pid1} -m -u -i -p -r -w /bin/bash\n"
                  f"Press Enter here to tear it down.", flush=True)
            input()
        say("tearing the guest down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
