"""An [L] (mid-2026) town under the installed units (gastown-2026.md §0, §3.0, §3.1):
the tmux host runs the town's own socket ``<base>-<hash6>``, the keepers start the Deacon,
Boot's and the rigs' agents there under [L] names, and a crash comes back there."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from tests.harness.guest import GuestSystemd
from tests.harness.guest_town import (
    STANDIN_DIR,
    agent_record,
    configure,
    new_town,
    tmux_panes,
    unit_of,
)

OWNER = "lena"
RIGS = {"gastown": "gt", "stockdrop": "st"}


def l_socket(town: str) -> str:
    """§3.0 by hand (the town path has no symlinks): base + first 6 hex of SHA-256."""
    return f"gt-{hashlib.sha256(town.encode()).hexdigest()[:6]}"


@pytest.fixture(scope="module")
def town(guest: GuestSystemd) -> Iterator[str]:
    path = new_town(guest, OWNER, rigs=RIGS, dialect="L")
    configure(guest, OWNER, {"GT_TOWN_ROOT": path,
                             "GT_AGENT_COMMAND": f"{STANDIN_DIR}/agent",
                             "GT_INTERVAL": "2", "GT_DEGRADED": "true"})
    guest.systemctl("enable", "--now", "gastown.target", "gastown-deacon-keeper",
                    "gastown-witness@gastown", "gastown-witness@stockdrop")
    yield path
    guest.systemctl("stop", "gastown.target", check=False)


def panes(guest: GuestSystemd, socket: str) -> dict[str, tuple[int, str]]:
    return tmux_panes(guest, OWNER, socket)


def running(guest: GuestSystemd, socket: str, session: str) -> int | None:
    pane = panes(guest, socket).get(session)
    return pane[0] if pane and pane[1] == "claude" else None


def test_agents_run_on_the_derived_socket_under_l_names(guest: GuestSystemd,
                                                        town: str) -> None:
    socket = l_socket(town)
    for session in ("hq-deacon", "gt-witness", "st-witness"):
        pid = guest.wait_for(lambda s=session: running(guest, socket, s), timeout=90,
                             what=f"{session} on tmux -L {socket}")
        assert unit_of(guest, pid) == "gastown-tmux.service"
    default = guest.run(["tmux", "-N", "list-sessions"], user=OWNER, check=False)
    assert default.returncode != 0 or "witness" not in default.stdout
    assert not {"gt-gastown-witness", "gt-stockdrop-witness"} & set(panes(guest, socket))
    record = guest.wait_for(lambda: agent_record(guest, f"{town}/stockdrop/witness"),
                            timeout=30, what="witness record")
    assert record["env"]["GT_ROLE"] == "stockdrop/witness"
    status = guest.show("gastown-deacon-keeper.service", "StatusText")["StatusText"]
    assert "hq-deacon" in status
    journal = guest.run(["journalctl", "-u", "gastown-deacon-keeper.service", "-o", "cat",
                         "--no-pager"]).stdout
    assert "dialect L" in journal and f"tmux -L {socket}" in journal


def test_a_crash_is_restarted_on_the_towns_socket(guest: GuestSystemd, town: str) -> None:
    socket = l_socket(town)
    first = guest.wait_for(lambda: running(guest, socket, "gt-witness"), timeout=90,
                           what="gt-witness")
    guest.run(["kill", "-9", str(first)])
    second = guest.wait_for(lambda: (p := running(guest, socket, "gt-witness")) and
                            p != first and p, timeout=60, what="gt-witness restarted")
    assert second != first
    assert "gt-gastown-witness" not in panes(guest, socket)


def test_status_and_doctor_show_the_dialect(guest: GuestSystemd, town: str) -> None:
    guest.wait_for(lambda: running(guest, l_socket(town), "gt-witness"), timeout=90,
                   what="gt-witness")
    status = guest.run(["gastown-units", "status"], check=False).stdout
    assert "dialect L" in status and "gt-witness" in status
    doctor = guest.run(["gastown-units", "doctor"], check=False).stdout
    assert "Gas Town dialect L" in doctor
