"""Gather the evidence of a town's dialect (gastown-2026.md §0): ask, never guess.

In the contract's order: the town's hashed [L] socket and its sessions, ``gt version``, the
files only an [L]-era ``gt`` writes, and the session names on the server the services
would use otherwise. Reads only; every tmux call passes ``-N`` (never starts a server).
``gt version`` is remembered per binary (path, size, mtime) under ``daemon/units/``, so the
polecat-health oneshot on the event path does not run it each time.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gastown_units.config import Settings
from gastown_units.config_files import SYSTEMD_DEFAULT_PATH, configured_path
from gastown_units.errors import GastownError
from gastown_units.ports import runner
from gastown_units.town.dialect import (
    Dialect,
    Evidence,
    Verdict,
    canonical_path,
    detect,
    socket_hash,
    socket_name,
)
from gastown_units.town.identity import Naming
from gastown_units.town.jsonfile import write_json_atomic
from gastown_units.town.layout import Town
from gastown_units.town.rigs import Rig, load_rigs
from gastown_units.town.unit_state import state_path

log = logging.getLogger(__name__)

#: L patrol keys that only an [L] daemon start or `gt up` writes (§0.2, §6.9).
L_PATROLS = ("wisp_reaper", "handler", "main_branch_test", "scheduled_maintenance")
_NONCE_RE = re.compile(r"[0-9]+\n[0-9a-f]{16}\n?")


def socket_dir(environ: Mapping[str, str], uid: int) -> Path:
    """Where tmux keeps sockets: ``$TMUX_TMPDIR/tmux-<uid>`` (default ``/tmp``)."""
    return Path(environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{uid}"


def town_sockets(town: Town, environ: Mapping[str, str], uid: int) -> list[str]:
    """Socket files named ``*-<hash6>`` of this town's canonical path (§3.0: match on
    the suffix, since the base may differ when the town is reached through a link)."""
    suffix = f"-{socket_hash(canonical_path(str(town.root)))}"
    try:
        names = sorted(os.listdir(socket_dir(environ, uid)))
    except OSError:
        return []
    return [n for n in names if n.endswith(suffix) and len(n) > len(suffix)]


def sessions_on(tmux_bin: str, path: Path, timeout: float) -> tuple[str, ...]:
    """Session names on the server at ``path``; none when it does not answer (no
    evidence). A path, not ``-L``: an operator's command run as root asks the owner's."""
    if not path.is_socket():
        return ()
    argv = [tmux_bin, "-N", "-S", str(path), "list-sessions", "-F", "#{session_name}"]
    try:
        result = runner.run(argv, timeout=timeout)
    except GastownError:
        return ()
    if not result.ok:
        return ()
    return tuple(line for line in result.stdout.splitlines() if line)


def l_files(town: Town) -> tuple[str, ...]:
    """The persistent markers an [L]-era ``gt`` leaves (§0.2); ``.runtime/`` itself and
    ``restart_state.json`` are not markers ([J] and our own services write them)."""
    root = town.root
    found = [rel for rel in ("rigs.json", ".events.jsonl.lock", ".runtime/heartbeats",
                             ".runtime/pids", ".runtime/nudge_queue", ".runtime/nudge_poller",
                             "deacon/.deacon-heartbeat", "events")
             if (root / rel).exists()]
    try:
        pid_text = (town.daemon_dir / "daemon.pid").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        pid_text = ""
    if _NONCE_RE.fullmatch(pid_text):
        found.append("daemon/daemon.pid with a nonce")
    try:
        daemon = json.loads(town.daemon_json.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        daemon = None
    patrols = daemon.get("patrols") if isinstance(daemon, dict) else None
    if isinstance(patrols, dict) and any(k in patrols for k in L_PATROLS):
        found.append("mayor/daemon.json with [L] patrols")
    return tuple(found)


def classify_names(names: Iterable[str], rigs: Mapping[str, Rig]
                   ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """([J]-named, [L]-named) Gas Town sessions among ``names`` (§3.1): ``gt-boot`` and
    ``gt-<rig>-witness|refinery`` are [J]; ``hq-boot``, ``hq-dog-*`` and
    ``<prefix>-witness|refinery`` are [L]. Polecats, mayor and deacon say nothing.

    >>> classify_names(["gt-boot", "gt-gastown-witness", "hq-deacon", "gt-witness"],
    ...                {"gastown": Rig("gastown", "gt", "gt")})
    (('gt-boot', 'gt-gastown-witness'), ('gt-witness',))
    """
    j_names = {"gt-boot"} | {f"gt-{r}-{role}" for r in rigs for role in ("witness", "refinery")}
    l_names = {"hq-boot"} | {f"{rig.session_prefix}-{role}" for rig in rigs.values()
                             for role in ("witness", "refinery")}
    j = tuple(n for n in names if n in j_names)
    el = tuple(n for n in names if n in l_names - j_names or n.startswith("hq-dog-"))
    return j, el


def gt_version(town: Town, gt_bin: str, timeout: float, cache: Path | None) -> str | None:
    """``gt version`` output, None when it fails; cached per binary identity. The binary
    is looked up as the units find it: our PATH, else the configured one, else systemd's
    default (an operator's ``status``/``doctor`` as root often has neither on its PATH)."""
    configured = configured_path(os.environ)
    path = shutil.which(gt_bin) or shutil.which(
        gt_bin, path=configured[0] if configured else SYSTEMD_DEFAULT_PATH)
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}"
    if cache is not None:
        try:
            saved = json.loads(cache.read_text(encoding="utf-8"))
            if isinstance(saved, dict) and saved.get("key") == key and \
                    isinstance(saved.get("output"), str):
                return str(saved["output"])
        except (OSError, ValueError, UnicodeDecodeError, RecursionError):
            pass
    try:
        result = runner.run([path, "version"], timeout=timeout, cwd=town.root)
    except GastownError as exc:
        log.debug("gt version failed: %s", exc)
        return None
    if not result.ok:
        return None
    output = result.stdout.strip()[:400]
    if cache is not None:
        try:
            write_json_atomic(cache, {"key": key, "output": output}, mode=0o644)
        except OSError as exc:
            log.debug("cannot cache gt version in %s: %s", cache, exc)
    return output


def gather(town: Town, rigs: Mapping[str, Rig], *, gt_bin: str, tmux_bin: str,
           socket: str | None, timeout: float, environ: Mapping[str, str] | None = None,
           uid: int | None = None, cache: Path | None = None,
           gt_timeout: float | None = None) -> Evidence:
    """The evidence, in the contract's probe order. ``socket`` is the server the
    services were told to use (``GT_TMUX_SOCKET``), None for the default server;
    ``timeout`` bounds each tmux call, ``gt_timeout`` (default: the same) ``gt version``."""
    env = os.environ if environ is None else environ
    user = os.getuid() if uid is None else uid
    where = socket_dir(env, user)
    l_socket_sessions: list[str] = []
    for name in town_sockets(town, env, user):
        l_socket_sessions += sessions_on(tmux_bin, where / name, timeout)
    other = sessions_on(tmux_bin, where / (socket or "default"), timeout)
    j_named, l_named = classify_names(other, rigs)
    return Evidence(
        gt_version=gt_version(town, gt_bin, gt_timeout or timeout, cache),
        l_socket_sessions=tuple(l_socket_sessions) + l_named,
        default_sessions=j_named,
        l_files=l_files(town),
    )


@dataclass(frozen=True)
class TownDialect:
    """What the services need from the verdict: the naming and the tmux socket."""

    verdict: Verdict
    naming: Naming
    socket: str | None  # the ``-L`` name of the town's server; None = tmux's default

    def line(self) -> str:
        where = f"tmux -L {self.socket}" if self.socket else "the default tmux server"
        return f"Gas Town dialect {self.verdict.describe()}; agents on {where}"


def tmux_socket(town: Town, dialect: Dialect, configured: str | None,
                environ: Mapping[str, str] | None = None, uid: int | None = None
                ) -> str | None:
    """[J]: the configured socket (None = default server). [L] (§3.0, §8 row 1): the
    configured name verbatim unless unset/``default``/``auto``; else an existing
    ``*-<hash6>`` socket of this town, else the derived ``<base>-<hash6>``."""
    if dialect is not Dialect.L:
        return configured
    if configured and configured not in ("default", "auto"):
        return configured
    env = os.environ if environ is None else environ
    existing = town_sockets(town, env, os.getuid() if uid is None else uid)
    derived = socket_name(str(town.root))
    if derived in existing or not existing:
        return derived
    return existing[0]


def resolve(town: Town, rigs: Mapping[str, Rig], settings: Settings,
            environ: Mapping[str, str] | None = None, uid: int | None = None) -> TownDialect:
    """Probe and judge the town; the verdict may be UNKNOWN (callers refuse to act).
    ``uid``: whose tmux sockets to look at (the town's owner; default: ours)."""
    if uid is None:
        try:
            uid = town.root.stat().st_uid  # the owner runs the town's tmux server
        except OSError:
            uid = os.getuid()
    override = Dialect(settings.dialect.upper()) if settings.dialect else None
    if override is None:
        evidence = gather(town, rigs, gt_bin=settings.gt_bin, tmux_bin=settings.tmux_bin,
                          socket=settings.tmux_socket,
                          timeout=settings.tmux_timeout, gt_timeout=settings.gt_timeout,
                          environ=environ, uid=uid, cache=state_path(town, "gt-version"))
    else:
        evidence = Evidence()
    verdict = detect(evidence, override)
    prefixes = {name: rig.session_prefix for name, rig in rigs.items()}
    return TownDialect(verdict, Naming.of(verdict.dialect, prefixes),
                       tmux_socket(town, verdict.dialect, settings.tmux_socket, environ, uid))


def for_town(settings: Settings, town: Town | None = None, uid: int | None = None
             ) -> tuple[Settings, TownDialect | None]:
    """``settings`` with ``tmux_socket`` set to the town's server, and the dialect found;
    unchanged (and None) when no town can be opened. Every command that talks to the
    town's tmux server (the tmux host, status, doctor, agents) goes through here, so all
    of them find the same server the services use."""
    if town is None:
        try:
            town = Town.open(settings.town_root)
        except GastownError:
            return settings, None
    try:
        rigs = load_rigs(town)
    except ValueError:
        rigs = {}
    found = resolve(town, rigs, settings, uid=uid)
    return settings.replace(tmux_socket=found.socket), found


def town_naming(settings: Settings, town: Town, rigs: Mapping[str, Rig]) -> Naming:
    """How the town spells its agents (J when it cannot be placed: nothing acts on
    that answer, it only reads spellings)."""
    return resolve(town, rigs, settings).naming
