"""Which Gas Town a town is: [J] (January 2026) or [L] (mid-2026), from positive evidence.

A wrong guess starts a second copy of every agent (an [L] town's agents live on their own
tmux socket under other names), so the verdict is [J], [L] or *unknown*, and the services
act on nothing in an unknown town (gastown-2026.md §0). Pure: the evidence is gathered by
:mod:`gastown_units.ports.dialect_probe`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from enum import StrEnum


class Dialect(StrEnum):
    J = "J"  # ≤ v0.5.x: default tmux server, gt-<rig>-* names, agent beads in rig DBs
    L = "L"  # ≥ v0.13: per-town socket, <prefix>-* names, agent beads in the town DB
    UNKNOWN = "unknown"


_VERSION_RE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")
#: First release with the [L] socket and names (§0.1 table: v0.13.0, 2026-03-29).
L_FROM = (0, 13, 0)
#: Releases 0.6-0.12 mix the two (§0.1): neither table fits them.
MIXED_FROM = (0, 6, 0)


def parse_gt_version(text: str) -> tuple[int, int, int] | None:
    """The first ``v?X.Y.Z`` of ``gt version`` output (§0.1), or None.

    >>> parse_gt_version("gt version 1.2.1-304-g649b832b (dev: main@649b832b1234)")
    (1, 2, 1)
    >>> parse_gt_version("gt version 0.5.0 (dev: main@cdcde82cd1a2)")
    (0, 5, 0)
    >>> parse_gt_version("Error: unknown command") is None
    True
    """
    found = _VERSION_RE.search(text)
    if found is None:
        return None
    major, minor, patch = (int(part) for part in found.groups())
    return major, minor, patch


def version_dialect(version: tuple[int, int, int]) -> Dialect:
    """< 0.6 ⇒ [J]; ≥ 0.13 ⇒ [L]; between: mixed (unknown).

    >>> [version_dialect(v) for v in ((0, 5, 9), (0, 9, 0), (0, 13, 0), (1, 2, 1))]
    [<Dialect.J: 'J'>, <Dialect.UNKNOWN: 'unknown'>, <Dialect.L: 'L'>, <Dialect.L: 'L'>]
    """
    if version >= L_FROM:
        return Dialect.L
    if version >= MIXED_FROM:
        return Dialect.UNKNOWN
    return Dialect.J


@dataclass(frozen=True)
class Evidence:
    """What a probe found; every field is positive evidence or absent."""

    gt_version: str | None = None  # `gt version` output, None if it failed
    l_socket_sessions: tuple[str, ...] = ()  # sessions on /tmp/tmux-<uid>/*-<hash6>
    default_sessions: tuple[str, ...] = ()  # Gas-Town-named sessions on the default server
    l_files: tuple[str, ...] = ()  # files only an [L]-era gt writes (§0.2)


@dataclass(frozen=True)
class Verdict:
    dialect: Dialect
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        """One line: the dialect and why."""
        why = "; ".join(self.reasons) or "no evidence"
        return f"{self.dialect.value}: {why}"


def detect(evidence: Evidence, override: Dialect | None = None) -> Verdict:
    """[J], [L] or unknown, with the evidence that decided it.

    An operator's ``GT_DIALECT`` wins. Otherwise every marker votes; votes for both
    dialects (a town an [L] binary touched whose agents run [J]-style, or the reverse),
    or a 0.6-0.12 binary, make the town unknown. No marker at all is a [J] town: every
    [L] binary writes ``rigs.json`` and ``.events.jsonl.lock`` at once (§0.2).

    >>> detect(Evidence(gt_version="gt version 0.5.0")).dialect
    <Dialect.J: 'J'>
    >>> detect(Evidence(l_files=("rigs.json",), default_sessions=("gt-gastown-witness",))
    ...        ).dialect
    <Dialect.UNKNOWN: 'unknown'>
    """
    if override is not None:
        return Verdict(override, (f"GT_DIALECT={override.value.lower()} (set by the "
                                  "operator)",))
    l_votes: list[str] = []
    j_votes: list[str] = []
    mixed: list[str] = []
    if evidence.gt_version is not None:
        version = parse_gt_version(evidence.gt_version)
        line = evidence.gt_version.strip().splitlines()[0][:80] if \
            evidence.gt_version.strip() else ""
        if version is not None:
            verdict = version_dialect(version)
            shown = ".".join(map(str, version))
            if verdict is Dialect.L:
                l_votes.append(f"gt {shown} (≥ 0.13)")
            elif verdict is Dialect.J:
                j_votes.append(f"gt {shown} (< 0.6)")
            else:
                mixed.append(f"gt {shown} is a 0.6-0.12 release (mixed dialect: "
                             f"{line!r})")
    if evidence.l_socket_sessions:
        l_votes.append(f"sessions on the town's [L] socket: "
                       f"{_few(evidence.l_socket_sessions)}")
    if evidence.l_files:
        l_votes.append(f"[L] files: {_few(evidence.l_files)}")
    if evidence.default_sessions:
        j_votes.append(f"Gas Town sessions on the default tmux server: "
                       f"{_few(evidence.default_sessions)}")
    if mixed:
        return Verdict(Dialect.UNKNOWN, tuple(mixed + l_votes + j_votes))
    if l_votes and j_votes:
        return Verdict(Dialect.UNKNOWN, ("mixed evidence", *l_votes, *j_votes))
    if l_votes:
        return Verdict(Dialect.L, tuple(l_votes))
    return Verdict(Dialect.J, tuple(j_votes) or ("no [L] marker",))


def _few(items: tuple[str, ...], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# --- the [L] tmux socket (§3.0) ----------------------------------------------------------
def socket_base(town_root: str) -> str:
    """Lower-cased basename, runs outside ``[a-z0-9-]`` as one ``-``, trimmed; ``default``.

    >>> socket_base("/home/alice/My Town.v2"), socket_base("/x/__")
    ('my-town-v2', 'default')
    """
    base = re.sub(r"[^a-z0-9-]+", "-", os.path.basename(town_root.rstrip("/")).lower())
    return base.strip("-") or "default"


def socket_hash(canonical: str) -> str:
    """First 3 bytes of SHA-256 of the canonical path, as 6 hex digits."""
    import hashlib  # here: OpenSSL's load is a cost of every process start otherwise

    return hashlib.sha256(canonical.encode()).hexdigest()[:6]


def canonical_path(town_root: str) -> str:
    """``EvalSymlinks``, else ``Abs``: the path the hash is taken from."""
    try:
        return os.path.realpath(town_root, strict=True)
    except OSError:
        return os.path.abspath(town_root)


def socket_name(town_root: str, configured: str | None = None,
                canonical: str | None = None) -> str:
    """The town's [L] socket: ``GT_TMUX_SOCKET`` verbatim unless unset, ``default`` or
    ``auto`` (which derive it; ``default`` is *not* tmux's default server).

    >>> socket_name("/home/u/gt", canonical="/home/u/gt")
    'gt-56fe62'
    >>> socket_name("/home/alice/My Town.v2", canonical="/home/alice/My Town.v2")
    'my-town-v2-e9606e'
    >>> socket_name("/home/u/gt", "mine")
    'mine'
    """
    if configured and configured not in ("default", "auto"):
        return configured
    real = canonical if canonical is not None else canonical_path(town_root)
    return f"{socket_base(town_root)}-{socket_hash(real)}"
