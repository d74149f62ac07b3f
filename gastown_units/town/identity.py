"""The one identity table: every spelling of an agent, parsed and rendered in one place.

Gas Town spells an agent six ways (mail address, legacy name, bead ID, tmux session,
``BD_ACTOR``, working directory) in separate switch statements that drifted apart; its own
daemon fails to parse the address form that real LIFECYCLE mail carries (contract §5.4, §8).
Here :class:`Identity` is the single source; :class:`IdentityParser` reads any spelling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from gastown_units.town.dialect import Dialect
from gastown_units.town.layout import Town
from gastown_units.town.names import valid_name

SESSION_PREFIX = "gt"  # rig-scoped session prefix as of [J]; [L]'s prefix of last resort
TOWN_PREFIX = "hq"  # town beads and town sessions


@dataclass(frozen=True)
class Naming:
    """How a town spells session names: [J] ``gt-<rig>-…`` or [L] ``<prefix>-…``.

    ``prefixes`` maps each rig to its ``beads.prefix`` exactly as ``mayor/rigs.json``
    stores it (2026 §3.1: the registry keeps only non-empty prefixes, no dash stripped).
    """

    dialect: Dialect = Dialect.J
    prefixes: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, dialect: Dialect, prefixes: Mapping[str, str] | None = None) -> Naming:
        return cls(dialect, tuple(sorted((prefixes or {}).items())))

    @property
    def is_l(self) -> bool:
        return self.dialect is Dialect.L

    def prefix(self, rig: str) -> str:
        """``PrefixFor(rig)``: the stored prefix, or ``gt`` for an unknown rig."""
        return dict(self.prefixes).get(rig) or SESSION_PREFIX

    def rig_of_prefix(self, name: str) -> tuple[str, str] | None:
        """(rig, rest) by the longest registered prefix ``P`` with ``name`` starting
        ``P-`` (unregistered prefixes never match; 2026 §3.1)."""
        best: tuple[str, str, str] | None = None
        for rig, prefix in self.prefixes:
            if name.startswith(f"{prefix}-") and (best is None or len(prefix) > len(best[1])):
                best = (rig, prefix, name[len(prefix) + 1:])
        return (best[0], best[2]) if best else None


J_NAMING = Naming()


class Role(StrEnum):
    MAYOR = "mayor"
    DEACON = "deacon"
    BOOT = "boot"
    WITNESS = "witness"
    REFINERY = "refinery"
    POLECAT = "polecat"
    CREW = "crew"


TOWN_ROLES = frozenset({Role.MAYOR, Role.DEACON, Role.BOOT})
NAMED_ROLES = frozenset({Role.POLECAT, Role.CREW})


@dataclass(frozen=True)
class Identity:
    """One agent. ``rig`` for rig roles, ``name`` for polecats and crew."""

    role: Role
    rig: str | None = None
    name: str | None = None
    #: the town's spelling of session names; not part of the agent's identity
    naming: Naming = field(default=J_NAMING, compare=False, repr=False)

    def in_town(self, naming: Naming) -> Identity:
        """The same agent, spelt as ``naming``'s town spells it."""
        return Identity(self.role, self.rig, self.name, naming)

    def __post_init__(self) -> None:
        if self.role in TOWN_ROLES:
            if self.rig or self.name:
                raise ValueError(f"{self.role} is a town agent: no rig or name")
            return
        if not self.rig or not valid_name(self.rig):
            raise ValueError(f"{self.role} needs a valid rig name, got {self.rig!r}")
        if self.role in NAMED_ROLES:
            if not self.name or not valid_name(self.name):
                raise ValueError(f"{self.role} needs a valid name, got {self.name!r}")
        elif self.name:
            raise ValueError(f"{self.role} takes no name")

    # --- renderings -------------------------------------------------------------------
    @property
    def address(self) -> str:
        """Mail address form (§5.2): ``mayor/``, ``<rig>/witness``, ``<rig>/<name>``."""
        if self.role is Role.BOOT:
            return "deacon/dogs/boot"
        if self.role in TOWN_ROLES:
            return f"{self.role}/"
        if self.role in NAMED_ROLES:
            return f"{self.rig}/{self.name}"
        return f"{self.rig}/{self.role}"

    @property
    def legacy(self) -> str:
        """Legacy dash form the Go daemon parses: ``gastown-witness``, ``gastown-crew-max``."""
        if self.role is Role.BOOT:
            return "deacon-boot"
        if self.role in TOWN_ROLES:
            return str(self.role)
        if self.role in NAMED_ROLES:
            return f"{self.rig}-{self.role}-{self.name}"
        return f"{self.rig}-{self.role}"

    @property
    def bd_actor(self) -> str:
        """``BD_ACTOR`` (§3.3)."""
        if self.role is Role.BOOT:
            return "deacon-boot"
        if self.role in TOWN_ROLES:
            return str(self.role)
        if self.role is Role.POLECAT:
            return f"{self.rig}/polecats/{self.name}"
        if self.role is Role.CREW:
            return f"{self.rig}/crew/{self.name}"
        return f"{self.rig}/{self.role}"

    @property
    def git_author_name(self) -> str:
        if self.role in NAMED_ROLES:
            return str(self.name)
        if self.role in TOWN_ROLES:
            return str(self.role)
        return f"{self.rig}/{self.role}"

    @property
    def session(self) -> str:
        """tmux session name in the town's dialect (§3.1; 2026 §3.1)."""
        if self.role is Role.BOOT:
            return f"{TOWN_PREFIX if self.naming.is_l else SESSION_PREFIX}-boot"
        if self.role in TOWN_ROLES:
            return f"{TOWN_PREFIX}-{self.role}"
        head = self.naming.prefix(str(self.rig)) if self.naming.is_l else \
            f"{SESSION_PREFIX}-{self.rig}"
        if self.role is Role.POLECAT:
            return f"{head}-{self.name}"
        if self.role is Role.CREW:
            return f"{head}-crew-{self.name}"
        return f"{head}-{self.role}"

    @property
    def role_name(self) -> str:
        """``GT_ROLE``: [J] the bare role; [L] compound ``<rig>/<role>[/<n>]``,
        ``deacon/boot`` (2026 §3.3)."""
        if not self.naming.is_l:
            return str(self.role)
        if self.role is Role.BOOT:
            return "deacon/boot"
        if self.role in TOWN_ROLES:
            return str(self.role)
        return self.bd_actor

    def bead_id(self, prefix: str | None = None) -> str | None:
        """Agent bead ID (§4.1); rig agents need the rig's prefix. Boot has no bead.
        [L] drops the rig part when the prefix equals the rig name (2026 §4.1)."""
        if self.role is Role.BOOT:
            return None
        if self.role in TOWN_ROLES:
            return f"{TOWN_PREFIX}-{self.role}"
        p = prefix or SESSION_PREFIX
        head = p if self.naming.is_l and p == self.rig else f"{p}-{self.rig}"
        if self.role in NAMED_ROLES:
            return f"{head}-{self.role}-{self.name}"
        return f"{head}-{self.role}"

    def workdir(self, town: Town) -> Path:
        """Working directory of the agent's session (§1.4, §3.2)."""
        root = town.root
        if self.role is Role.MAYOR:
            return root
        if self.role is Role.DEACON:
            return town.deacon_dir
        if self.role is Role.BOOT:
            return town.boot_dir
        rig = town.rig_dir(str(self.rig))
        if self.role is Role.WITNESS:  # [L] dropped the rig-root fallback (2026 §1.4)
            return _first_dir(rig / "witness" / "rig", rig / "witness",
                              default=rig / "witness" if self.naming.is_l else rig)
        if self.role is Role.REFINERY:
            return _first_dir(rig / "refinery" / "rig", rig / "mayor" / "rig",
                              default=rig / "refinery" / "rig")
        if self.role is Role.CREW:
            return rig / "crew" / str(self.name)
        new = rig / "polecats" / str(self.name) / str(self.rig)
        return new if new.is_dir() else rig / "polecats" / str(self.name)

    def env(self, town: Town) -> dict[str, str]:
        """The role's environment (``AgentEnv``, §3.3) for the agent's start command."""
        env = {
            "GT_ROLE": self.role_name,
            "BD_ACTOR": self.bd_actor,
            "GIT_AUTHOR_NAME": self.git_author_name,
            "GT_ROOT": str(town.root),
        }
        if self.rig:
            env["GT_RIG"] = self.rig
        if self.role is Role.POLECAT:
            env["GT_POLECAT"] = str(self.name)
        if self.role is Role.CREW:
            env["GT_CREW"] = str(self.name)
        if self.role in NAMED_ROLES:
            env["BEADS_AGENT_NAME"] = f"{self.rig}/{self.name}"
        if self.role is Role.REFINERY:
            env["GT_REFINERY"] = "1"
        if not self.naming.is_l:
            if self.role in (Role.REFINERY, Role.POLECAT):
                env["BEADS_NO_DAEMON"] = "1"  # removed in [L] (af0ea37f)
            return env
        # [L] AgentEnv (2026 §3.3): the session, the town, hardened bd selectors cleared
        env["GT_SESSION"] = self.session
        env["GIT_CEILING_DIRECTORIES"] = str(town.root)
        env["BEADS_DOLT_AUTO_START"] = "0"
        env["BD_BACKUP_ENABLED"] = "false"
        for key in L_CLEARED_ENV:
            env[key] = ""
        if self.role is Role.POLECAT:
            env["GT_TOWN_ROOT"] = str(town.root)
            env["BD_DOLT_AUTO_COMMIT"] = "off"
        return env

    def __str__(self) -> str:
        return self.address


#: Variables [L] sets empty on purpose: inherited bd target selectors must not reach an
#: agent (2026 §3.3).
L_CLEARED_ENV = (
    "NODE_OPTIONS", "CLAUDECODE", "BEADS_DIR", "BEADS_DB", "BD_DB", "BEADS_SHARED_SERVER_DIR",
    "BEADS_DOLT_DATA_DIR", "BEADS_DOLT_DATABASE", "BEADS_DOLT_SERVER_DATABASE",
    "BEADS_DOLT_HOST", "BEADS_DOLT_SHARED_SERVER", "BEADS_DOLT_SERVER_MODE",
    "BEADS_DOLT_SERVER_SOCKET", "GT_DOLT_DATA",
)


def _first_dir(*candidates: Path, default: Path) -> Path:
    return next((c for c in candidates if c.is_dir()), default)


DEACON = Identity(Role.DEACON)
BOOT = Identity(Role.BOOT)
MAYOR = Identity(Role.MAYOR)

_TOWN_SPELLINGS: Mapping[str, Identity] = {
    "mayor": MAYOR, "mayor/": MAYOR, "hq-mayor": MAYOR, "gt-mayor": MAYOR,
    "deacon": DEACON, "deacon/": DEACON, "hq-deacon": DEACON, "gt-deacon": DEACON,
    "boot": BOOT, "boot/": BOOT, "deacon-boot": BOOT, "deacon/dogs/boot": BOOT,
    "deacon/boot": BOOT,
    "gt-boot": BOOT, "hq-boot": BOOT, "gt-deacon-boot": BOOT,
}


@dataclass
class IdentityParser:
    """Parses any spelling of an agent, given what the town knows.

    ``rigs`` resolves dash forms whose rig names contain ``-``; ``prefixes`` maps rigs to bead
    prefixes; ``is_crew(rig, name)`` disambiguates the address ``<rig>/<name>``, which Gas
    Town uses for both polecats and crew (default: polecat unless a crew dir exists).
    ``naming`` is the town's: an [L] town's session names (``gt-witness``, ``hq-boot``) are
    read by the longest registered prefix, and every result is spelt the town's way.
    """

    rigs: Iterable[str] = ()
    prefixes: Mapping[str, str] = field(default_factory=dict)
    is_crew: Callable[[str, str], bool] = lambda _rig, _name: False
    naming: Naming = J_NAMING

    @classmethod
    def for_town(cls, town: Town, rigs: Iterable[str], prefixes: Mapping[str, str],
                 naming: Naming = J_NAMING) -> IdentityParser:
        def is_crew(rig: str, name: str) -> bool:
            return (town.rig_dir(rig) / "crew" / name).is_dir()

        return cls(rigs=list(rigs), prefixes=dict(prefixes), is_crew=is_crew, naming=naming)

    def parse(self, text: str) -> Identity:
        """The identity ``text`` spells; ValueError says why not."""
        raw = text.strip()
        if not raw:
            raise ValueError("empty agent identity")
        found: Identity | None
        if raw in _TOWN_SPELLINGS:
            found = _TOWN_SPELLINGS[raw]
        else:
            try:
                found = self._parse_slash(raw) if "/" in raw else self._parse_dash(raw)
            except ValueError:
                found = None
        if found is None:
            raise ValueError(f"unknown agent identity {text!r}")
        return found.in_town(self.naming)

    def _parse_slash(self, raw: str) -> Identity | None:
        parts = raw.strip("/").split("/")
        if len(parts) == 2:
            rig, what = parts
            if what in ("witness", "refinery"):
                return Identity(Role(what), rig)
            role = Role.CREW if self.is_crew(rig, what) else Role.POLECAT
            return Identity(role, rig, what)
        if len(parts) == 3 and parts[1] in ("polecats", "crew"):
            role = Role.POLECAT if parts[1] == "polecats" else Role.CREW
            return Identity(role, parts[0], parts[2])
        return None

    def _parse_dash(self, raw: str) -> Identity | None:
        rigs = sorted(set(self.rigs), key=len, reverse=True)
        for rig in rigs:
            found = self._match_rig(raw, rig)
            if found:
                return found
        if self.naming.is_l:
            found = self._parse_l_session(raw)
            if found:
                return found
        # Unknown rig: assume a rig name without '-' (the common case).
        first, _, body = raw.partition("-")
        for rig in (first, body.split("-", 1)[0]):
            # A bead ID of an unknown rig may carry any 2-3 letter prefix (§4.1).
            extra = first if 2 <= len(first) <= 3 and rig != first else None
            if rig and rig not in rigs:
                found = self._match_rig(raw, rig, extra)
                if found:
                    return found
        return None

    def _parse_l_session(self, raw: str) -> Identity | None:
        """``ParseSessionNameWithRegistry`` (2026 §3.1): the longest registered prefix,
        then ``witness``, ``refinery``, ``crew-<n>``, else polecat ``<rest>``."""
        split = self.naming.rig_of_prefix(raw)
        if split is None:
            return None
        rig, rest = split
        if rest in ("witness", "refinery"):
            return Identity(Role(rest), rig)
        if rest.startswith("crew-") and len(rest) > len("crew-"):
            return Identity(Role.CREW, rig, rest[len("crew-"):])
        return Identity(Role.POLECAT, rig, rest) if rest else None

    def _match_rig(self, raw: str, rig: str, extra_prefix: str | None = None
                   ) -> Identity | None:
        prefixes = {SESSION_PREFIX, self.prefixes.get(rig, SESSION_PREFIX)}
        if extra_prefix:
            prefixes.add(extra_prefix)
        # (candidate without prefix, whether it was a session-style "gt-" spelling)
        candidates = [(raw, False)]
        candidates += [(raw[len(p) + 1:], p == SESSION_PREFIX)
                       for p in prefixes if raw.startswith(f"{p}-")]
        for body, session_form in candidates:
            if not body.startswith(f"{rig}-"):
                continue
            rest = body[len(rig) + 1:]
            if rest in ("witness", "refinery"):
                return Identity(Role(rest), rig)
            for role in (Role.CREW, Role.POLECAT):
                if rest.startswith(f"{role}-") and len(rest) > len(role) + 1:
                    return Identity(role, rig, rest[len(role) + 1:])
            if session_form and rest:
                return Identity(Role.POLECAT, rig, rest)
        return None
