"""The operator's day in a fresh guest (issue 10): the .deb installed, ``gastown-units setup``
alone brings the town up; status (root and owner), doctor, capture/logs/attach, hold and
release of a polecat (it stays down while held, comes back after), a rig added to rigs.json
gets its services, ``systemctl restart gastown.target`` keeps every rig supervised and the
tmux host untouched, and a crash loop mails mayor/ once. The steps are those of
``python3 -m tests.harness.operator_day`` (which prints them as a transcript)."""

from __future__ import annotations

from tests.harness.guest import GuestSystemd
from tests.harness.operator_day import day


def test_the_operators_day(guest: GuestSystemd) -> None:
    failures = day(guest)
    assert failures == [], failures
