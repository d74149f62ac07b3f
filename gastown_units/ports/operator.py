"""How an operator's command reaches the town's tmux server: as the owner, or as root.

The units run as the town's owner (the ``User=`` of the owner drop-in), so the agents live
on the owner's tmux server, ``$TMUX_TMPDIR/tmux-<uid>/<socket>``. An operator who runs
``gastown-units status`` as root would ask root's own server and see nothing; here root is
pointed at the owner's socket file (tmux lets root connect to any user's server).
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from gastown_units.config import Settings
from gastown_units.config_files import layers
from gastown_units.errors import GastownError
from gastown_units.ports import runner
from gastown_units.ports.tmux import Tmux
from gastown_units.town.layout import Town

OWNER_UNIT = "gastown-tmux.service"


@dataclass(frozen=True)
class Owner:
    name: str
    uid: int
    home: Path
    source: str  # where the owner was learned: the unit's User=, or the town's directory


def unit_user(unit: str = OWNER_UNIT, timeout: float = 5.0) -> str | None:
    """The ``User=`` systemd runs ``unit`` as, or None (root, no systemd, no answer)."""
    if not Path("/run/systemd/system").is_dir():
        return None
    try:
        result = runner.run(["systemctl", "show", "--property=User", "--value", "--", unit],
                            timeout=timeout)
    except GastownError:
        return None
    name = result.stdout.strip()
    return name if result.ok and name and name != "root" else None


def town_owner(town: Town, timeout: float = 5.0) -> Owner:
    """The owner the units run as, else the owner of the town's directory."""
    name = unit_user(timeout=timeout)
    if name is not None:
        try:
            entry = pwd.getpwnam(name)
            return Owner(entry.pw_name, entry.pw_uid, Path(entry.pw_dir), f"{OWNER_UNIT} User=")
        except KeyError:
            pass
    uid = town.root.stat().st_uid
    try:
        entry = pwd.getpwuid(uid)
        return Owner(entry.pw_name, uid, Path(entry.pw_dir), f"owner of {town.root}")
    except KeyError:
        return Owner(str(uid), uid, Path("/"), f"owner of {town.root}")


def socket_file(socket: str | None, uid: int, tmpdir: str | None = None) -> Path:
    """The socket file of ``tmux -L socket`` for user ``uid`` (tmux's own rule).

    >>> str(socket_file(None, 1000)), str(socket_file("gt", 0, "/run/t"))
    ('/tmp/tmux-1000/default', '/run/t/tmux-0/gt')
    """
    return Path(tmpdir or "/tmp") / f"tmux-{uid}" / (socket or "default")


def operator_tmux(settings: Settings, town: Town, environ: dict[str, str] | None = None
                  ) -> tuple[Tmux, Owner]:
    """A tmux client on the town's server for this process, whoever runs it: the owner's
    socket of the town's dialect ([L]: ``<base>-<hash6>``)."""
    from gastown_units.ports.dialect_probe import for_town

    env = layers(os.environ).merged() if environ is None else environ  # as the units see it
    owner = town_owner(town, settings.tmux_timeout)
    settings = for_town(settings, town, uid=owner.uid)[0]
    path = None
    if os.geteuid() != owner.uid:
        path = socket_file(settings.tmux_socket, owner.uid, env.get("TMUX_TMPDIR"))
    return Tmux(binary=settings.tmux_bin, socket=settings.tmux_socket,
                timeout=settings.tmux_timeout, socket_path=path), owner
