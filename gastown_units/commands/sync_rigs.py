"""``gastown-units sync-rigs``: the rig targets follow the town's ``mayor/rigs.json``.

gastown-rigs.path runs it (through gastown-rigs.service) when rigs.json or gastown.conf
changes: a rig that appeared gets ``gastown-rig@RIG.target`` enabled and started, a rig
that is gone gets its target (and any witness@/refinery@ instance enabled on its own)
stopped and disabled, one journal line each. It touches units only, never an agent: a
stopped supervisor leaves its agent's session running.

A rigs.json that is missing, damaged or unreadable changes nothing (one line naming the
file): a half-written file must not take every rig's supervision down. A rig name that is
not safe as a unit instance name (``[A-Za-z0-9_-]``, no leading ``-``, at most 64
characters) is refused with a line and left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import click

from gastown_units.commands import systemctl
from gastown_units.config import Settings
from gastown_units.errors import BadInput, GastownError
from gastown_units.ports.argv import checked_name
from gastown_units.town.jsonfile import read_json_object
from gastown_units.town.layout import Town
from gastown_units.town.names import valid_name

log = logging.getLogger(__name__)

WANTS_DIR = Path("/etc/systemd/system/gastown.target.wants")
#: Named in the rig units' Also=: ``systemctl disable`` of a rig unit disables these too,
#: so a removal enables again those of them that were enabled before it.
ALSO_UNITS = ("gastown.target", "gastown-tmux.service")
TARGET_PREFIX, TARGET_SUFFIX = "gastown-rig@", ".target"


def rig_target(rig: str) -> str:
    return f"{TARGET_PREFIX}{rig}{TARGET_SUFFIX}"


def rig_of_unit(unit: str) -> str | None:
    """``myrig`` for ``gastown-rig@myrig.target``; None for anything else (an escaped or
    otherwise unusual instance name is not ours to manage)."""
    if not (unit.startswith(TARGET_PREFIX) and unit.endswith(TARGET_SUFFIX)):
        return None
    rig = unit[len(TARGET_PREFIX):-len(TARGET_SUFFIX)]
    return rig if valid_name(rig) else None


@dataclass(frozen=True)
class RigChanges:
    enable: tuple[str, ...]  # rigs whose target is to be enabled (and started)
    start: tuple[str, ...]  # rigs enabled already whose target is not active
    remove: tuple[str, ...]  # rigs gone from rigs.json: stop and disable

    @property
    def empty(self) -> bool:
        return not (self.enable or self.start or self.remove)


def rig_changes(wanted: Iterable[str], enabled: Iterable[str], active: Iterable[str]
                ) -> RigChanges:
    """Pure: what to do so that exactly the ``wanted`` rigs have an enabled, active target."""
    want, on, up = set(wanted), set(enabled), set(active)
    return RigChanges(enable=tuple(sorted(want - on)),
                      start=tuple(sorted((want & on) - up)),
                      remove=tuple(sorted((on | up) - want)))


def wanted_rigs(town: Town) -> list[str] | None:
    """Rig names of rigs.json that are safe unit instance names; None (and one line)
    when the file cannot be used, so that nothing changes."""
    path = town.rigs_json
    try:
        data = read_json_object(path)
    except ValueError as exc:
        log.warning("%s is unreadable (%s): rig units left as they are",
                    path, getattr(exc, "why", exc))
        return None
    if data is None:
        log.warning("%s is missing: rig units left as they are", path)
        return None
    rigs = data.get("rigs")
    if not isinstance(rigs, dict):
        log.warning("%s has no 'rigs' object: rig units left as they are", path)
        return None
    names = []
    for name in rigs:
        try:
            names.append(checked_name("rig", name))
        except BadInput as exc:
            log.warning("%s: refusing rig %s as a unit name (%s)", path, ascii(name)[:80],
                        exc)
    return names


def enabled_rigs(wants_dir: Path = WANTS_DIR) -> set[str]:
    try:
        entries = [p.name for p in wants_dir.iterdir()]
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise GastownError(f"cannot list {wants_dir}: {exc}") from None
    return {rig for name in entries if (rig := rig_of_unit(name))}


def active_rigs() -> set[str]:
    listing = systemctl.query_lines("list-units", "--all", "--plain", "--no-legend",
                                    "--state=active,activating,reloading",
                                    f"{TARGET_PREFIX}*{TARGET_SUFFIX}")
    return {rig for line in listing if line.split()
            and (rig := rig_of_unit(line.split()[0]))}


def apply(changes: RigChanges) -> int:
    """Carry ``changes`` out, one journal line per rig; the number of failures."""
    steps: list[tuple[str, tuple[str, ...], str]] = []
    for rig in changes.enable:
        steps.append((rig, ("enable", "--now", rig_target(rig)),
                      f"rig {rig} is in rigs.json: enabled and started {rig_target(rig)}"))
    for rig in changes.start:
        steps.append((rig, ("start", rig_target(rig)),
                      f"rig {rig} is in rigs.json: started {rig_target(rig)}"))
    for rig in changes.remove:
        steps.append((rig, ("disable", "--now", rig_target(rig),
                            f"gastown-witness@{rig}.service",
                            f"gastown-refinery@{rig}.service"),
                      f"rig {rig} is gone from rigs.json: stopped and disabled "
                      f"{rig_target(rig)} and its services (its agents' sessions are left "
                      "alone)"))
    failures = 0
    for rig, argv, done in steps:
        keep = [u for u in ALSO_UNITS if argv[0] == "disable" and systemctl.is_enabled(u)]
        try:
            systemctl.run(argv)
            lost = [u for u in keep if not systemctl.is_enabled(u)]
            if lost:
                systemctl.run(("enable", *lost))
        except GastownError as exc:
            failures += 1
            log.error("rig %s: %s", rig, exc)
        else:
            log.info("%s", done)
    return failures


@click.command("sync-rigs")
@click.option("--town", "town_root", type=click.Path(path_type=Path), default=None,
              help="Town root [env GT_TOWN_ROOT].")
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
def sync_rigs_cmd(town_root: Path | None, dry_run: bool) -> None:
    """Enable and start the target of every rig in mayor/rigs.json; stop and disable the
    targets of rigs no longer there (gastown-rigs.service runs this)."""
    from gastown_units.runtime.logs import setup_logging

    setup_logging("gastown-rigs", role="rigs")
    settings = Settings.load(overrides={"town_root": town_root})
    town = Town.open(settings.town_root)
    wanted = wanted_rigs(town)
    if wanted is None:
        return
    changes = rig_changes(wanted, enabled_rigs(), active_rigs())
    if changes.empty:
        log.info("rig units match %s (%d rig(s)): nothing to do", town.rigs_json,
                 len(wanted))
        return
    if dry_run:
        for rig in changes.enable + changes.start:
            click.echo(f"would enable and start {rig_target(rig)}")
        for rig in changes.remove:
            click.echo(f"would stop and disable {rig_target(rig)}")
        return
    if apply(changes):
        raise GastownError("some rig units could not be changed (see the lines above)")
