"""Every knob of every service, in one table: name, environment variable, default, meaning.

The CLI builds its options from this table and the packaged ``/etc/gastown/gastown.conf``
documents the same names, so a default is written down exactly once (here).
Defaults follow Gas Town's daemon (contract gastown.md §6.10) unless noted.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gastown_units.config_files import CONFIG_ENV, Layer, Layers, layers
from gastown_units.errors import ConfigError

#: Longest duration any knob takes: beyond it a value is a typo (``1e308``), and a timer
#: or ``time.sleep`` would overflow on it.
MAX_SECONDS = 30 * 24 * 3600.0
#: Largest count any knob takes (workers, restarts, deaths).
MAX_COUNT = 10_000

_DURATION_RE = re.compile(
    r"(?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[+-]?[0-9]+)?)(?P<unit>ms|s|m|h)?",
    re.ASCII)
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(text: str) -> float:
    """Parse ``90``, ``90s``, ``5m``, ``1h`` or ``250ms`` into seconds, 0 included (a
    knob where 0 means "at once": a backoff, a delay, a grace).

    Finite and at most :data:`MAX_SECONDS`: ``nan`` would compare false with everything
    (a busy loop) and ``inf`` overflows a sleep.
    """
    raw = text.strip().lower()
    match = _DURATION_RE.fullmatch(raw)
    if match is None:
        if raw.startswith("-"):
            raise ValueError(f"negative duration: {text!r}")
        raise ValueError(f"not a duration: {text!r} (use e.g. 30, 30s, 5m, 1h)")
    value = float(match["number"]) * _UNITS[match["unit"]]
    if not math.isfinite(value) or value > MAX_SECONDS:
        raise ValueError(f"duration too long: {text!r} (at most 30 days)")
    return value


def _positive_seconds(text: str) -> float:
    """:func:`_seconds` greater than 0: an interval or a timeout (0 would be a busy loop,
    a tool that may never answer, or a threshold every agent is always past)."""
    value = _seconds(text)
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {text!r}")
    return value


def _bool(text: str) -> bool:
    raw = text.strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r} (use true or false)")


def _count(text: str) -> int:
    """A whole number from 1 to :data:`MAX_COUNT` (ASCII digits only)."""
    raw = text.strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,12}", raw, re.ASCII):
        raise ValueError(f"not a whole number: {text!r}")
    value = int(raw)
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    if value > MAX_COUNT:
        raise ValueError(f"must be at most {MAX_COUNT}, got {value}")
    return value


def _text(text: str) -> str | None:
    return text.strip() or None


def _raw(text: str) -> str | None:
    return text or None


def _dialect(text: str) -> str | None:
    raw = text.strip().lower()
    if raw in ("", "auto"):
        return None
    if raw in ("j", "l"):
        return raw
    raise ValueError(f"not a dialect: {text!r} (use j, l or auto)")


def _path(text: str) -> Path | None:
    return Path(os.path.expanduser(text)) if text.strip() else None  # ~nosuchuser: kept


@dataclass(frozen=True)
class Knob:
    """One setting: the field name, its environment variable, parser and help text."""

    field: str
    env: str
    parse: Callable[[str], Any]
    help: str


KNOBS: tuple[Knob, ...] = (
    Knob("town_root", "GT_TOWN_ROOT", _path,
         "Town root (holds mayor/town.json); found from the working directory when unset."),
    Knob("bd_bin", "GT_BD_BIN", _text, "The beads CLI."),
    Knob("gt_bin", "GT_GT_BIN", _text, "The Gas Town CLI (used for mail)."),
    Knob("tmux_bin", "GT_TMUX_BIN", _text, "The tmux binary."),
    Knob("tmux_socket", "GT_TMUX_SOCKET", _text,
         "tmux -L socket name; unset = the user's default server, as Gas Town uses."),
    Knob("dialect", "GT_DIALECT", _dialect,
         "Which Gas Town the town is: j (January 2026), l (mid-2026) or auto (detect from "
         "gt version, the town's tmux socket and files; an unclear town is refused)."),
    Knob("agent_command", "GT_AGENT_COMMAND", _text,
         "Agent command line that overrides the one resolved from the town's settings."),
    Knob("interval", "GT_INTERVAL", _positive_seconds,
         "Seconds between safety-net passes of a long-running service (tmux events, "
         "changes of the town's files and beads stores, and systemctl reload wake it "
         "at once)."),
    Knob("fact_max_age", "GT_FACT_MAX_AGE", _seconds,
         "Longest a fact read through bd or gt (a rig bead's labels, an inbox) is reused "
         "while the beads store it comes from looks unchanged (0: read every pass)."),
    Knob("tmux_timeout", "GT_TMUX_TIMEOUT", _positive_seconds, "Timeout of one tmux call."),
    Knob("bd_timeout", "GT_BD_TIMEOUT", _positive_seconds, "Timeout of one bd call."),
    Knob("gt_timeout", "GT_GT_TIMEOUT", _positive_seconds, "Timeout of one gt call."),
    Knob("start_timeout", "GT_START_TIMEOUT", _positive_seconds,
         "How long a new session may take before its agent runs (Gas Town: 60 s)."),
    Knob("kill_grace", "GT_KILL_GRACE", _seconds,
         "Seconds between SIGTERM and SIGKILL when a session's processes are killed."),
    Knob("deacon_grace", "GT_DEACON_GRACE", _seconds,
         "No heartbeat checks this long after the Deacon session was created."),
    Knob("heartbeat_nudge", "GT_DEACON_HEARTBEAT_NUDGE", _positive_seconds,
         "Deacon heartbeat age at which the Deacon is nudged (HEALTH_CHECK)."),
    Knob("heartbeat_kill", "GT_DEACON_HEARTBEAT_KILL", _positive_seconds,
         "Deacon heartbeat age beyond which the Deacon is killed and restarted."),
    Knob("nudge_interval", "GT_NUDGE_INTERVAL", _seconds,
         "Least time between two HEALTH_CHECK nudges of the same agent."),
    Knob("boot_interval", "GT_BOOT_INTERVAL", _seconds,
         "Least time between two Boot spawns (Gas Town spawned Boot every 3-minute beat)."),
    Knob("degraded", "GT_DEGRADED", _bool,
         "Degraded mode: triage the Deacon mechanically instead of spawning a Boot agent."),
    Knob("git_bin", "GT_GIT_BIN", _text, "The git binary."),
    Knob("git_timeout", "GT_GIT_TIMEOUT", _positive_seconds, "Timeout of one git call."),
    Knob("ready_prompt", "GT_READY_PROMPT", _raw,
         "Line prefix that shows the Refinery's runtime is ready; unset: the runtime's own "
         "(Claude's '❯ '), and runtimes without a known prompt wait their ready delay."),
    Knob("stuck_threshold", "GT_WITNESS_STUCK_THRESHOLD", _positive_seconds,
         "A live polecat with no git/state-file activity this long is stuck."),
    Knob("ladder_interval", "GT_WITNESS_LADDER_INTERVAL", _seconds,
         "Least time between two steps of the stuck ladder (nudge, escalate, wait)."),
    Knob("auto_spawn", "GT_WITNESS_AUTO_SPAWN", _bool,
         "Let the Witness sling ready work (bd ready) to new polecats."),
    Knob("max_workers", "GT_WITNESS_MAX_WORKERS", _count,
         "Most live polecats per rig that auto-spawn fills up to."),
    Knob("spawn_delay", "GT_WITNESS_SPAWN_DELAY", _seconds, "Pause between two auto-spawns."),
    Knob("sling_timeout", "GT_WITNESS_SLING_TIMEOUT", _positive_seconds,
         "Longest a gt sling may take (it waits for the new polecat's runtime; it runs in "
         "the background, so this may exceed the watchdog)."),
    Knob("sling_backoff", "GT_WITNESS_SLING_BACKOFF", _seconds,
         "Wait before slinging an issue again after a failed sling (doubles per failure, "
         "at most 1 h)."),
    Knob("issue_prefix", "GT_WITNESS_ISSUE_PREFIX", _text,
         "Auto-spawn only issues whose ID starts with this."),
    Knob("lifecycle_interval", "GT_LIFECYCLE_INTERVAL", _positive_seconds,
         "Seconds between safety-net reads of the Deacon's inbox for LIFECYCLE requests "
         "(new mail in the town's store wakes it at once)."),
    Knob("lifecycle_max_age", "GT_LIFECYCLE_MAX_AGE", _positive_seconds,
         "LIFECYCLE requests older than this are deleted unread (Gas Town: 6 h)."),
    Knob("lifecycle_strict", "GT_LIFECYCLE_STRICT", _bool,
         "Act on a LIFECYCLE request only if the agent's state.json has requesting_<action>."),
    Knob("restart_backoff", "GT_RESTART_BACKOFF", _seconds,
         "First wait before a crashed polecat is restarted again; doubles per restart."),
    Knob("restart_backoff_max", "GT_RESTART_BACKOFF_MAX", _seconds,
         "Longest wait between restarts of one polecat."),
    Knob("backoff_wait", "GT_BACKOFF_WAIT", _seconds,
         "A sweep started by its .path or .timer unit stays this long for a crashed "
         "polecat whose backoff ends meanwhile, and restarts it when it ends (0: the next "
         "sweep does)."),
    Knob("crash_loop_restarts", "GT_CRASH_LOOP_RESTARTS", _count,
         "This many restarts within GT_CRASH_LOOP_WINDOW is a crash loop: restarts stop."),
    Knob("crash_loop_window", "GT_CRASH_LOOP_WINDOW", _positive_seconds,
         "See GT_CRASH_LOOP_RESTARTS."),
    Knob("restart_stable_reset", "GT_RESTART_STABLE_RESET", _positive_seconds,
         "A polecat alive this long after its last restart gets a clean slate."),
    Knob("mass_death_count", "GT_MASS_DEATH_COUNT", _count,
         "This many polecat deaths within GT_MASS_DEATH_WINDOW is a mass death (event)."),
    Knob("mass_death_window", "GT_MASS_DEATH_WINDOW", _positive_seconds,
         "See GT_MASS_DEATH_COUNT."),
    Knob("gupp_timeout", "GT_GUPP_TIMEOUT", _positive_seconds,
         "A live polecat with hooked work whose agent bead is not updated this long "
         "violates GUPP (mail to the witness)."),
    Knob("event_file", "GT_EVENT_FILE", _path,
         "File the tmux hooks touch when a session closes: long-running services wake on "
         "it at once, and a sweep that sees it change while it runs sweeps again."),
    Knob("spawn_grace", "GT_SPAWN_GRACE", _seconds,
         "A polecat that started spawning less than this ago is not restarted."),
)

KNOB_BY_FIELD: Mapping[str, Knob] = {k.field: k for k in KNOBS}


@dataclass(frozen=True)
class Settings:
    """Effective configuration of one service process."""

    town_root: Path | None = None
    bd_bin: str = "bd"
    gt_bin: str = "gt"
    tmux_bin: str = "tmux"
    tmux_socket: str | None = None
    dialect: str | None = None
    agent_command: str | None = None
    interval: float = 180.0
    fact_max_age: float = 300.0
    tmux_timeout: float = 5.0
    bd_timeout: float = 15.0
    gt_timeout: float = 15.0
    start_timeout: float = 60.0
    kill_grace: float = 2.0
    deacon_grace: float = 300.0
    heartbeat_nudge: float = 900.0
    heartbeat_kill: float = 1800.0
    nudge_interval: float = 300.0
    boot_interval: float = 180.0
    degraded: bool = False
    git_bin: str = "git"
    git_timeout: float = 30.0
    ready_prompt: str | None = None
    stuck_threshold: float = 1800.0
    ladder_interval: float = 600.0
    auto_spawn: bool = False
    max_workers: int = 4
    spawn_delay: float = 5.0
    sling_timeout: float = 180.0
    sling_backoff: float = 60.0
    issue_prefix: str | None = None
    lifecycle_interval: float = 300.0
    lifecycle_max_age: float = 6 * 3600.0
    lifecycle_strict: bool = False
    restart_backoff: float = 30.0
    restart_backoff_max: float = 600.0
    backoff_wait: float = 190.0  # just over the timer's period (3 min): every expiry is met
    crash_loop_restarts: int = 5
    crash_loop_window: float = 900.0
    restart_stable_reset: float = 1800.0
    mass_death_count: int = 3
    mass_death_window: float = 30.0
    gupp_timeout: float = 1800.0
    spawn_grace: float = 300.0
    event_file: Path | None = Path("/run/gastown-tmux/events")
    # The knob fields set by an operator (a file, the environment or a flag), not defaults:
    # a dialect's defaults (DIALECT_DEFAULTS) never override them.
    explicit: frozenset[str] = dataclasses.field(default=frozenset(), compare=False,
                                                 repr=False)

    @classmethod
    def load(
        cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None,
        *, rig: str | None = None,
    ) -> Settings:
        """Defaults, then the configuration files, the environment, then explicit overrides
        (CLI flags); see :func:`load_with_sources`."""
        return load_with_sources(environ, overrides, rig=rig)[0]

    def check(self) -> None:
        """Reject settings that cannot work together (or were set without a parser)."""
        for each in KNOBS:
            value = getattr(self, each.field)
            if isinstance(value, float) and not 0 <= value <= MAX_SECONDS:
                raise ConfigError(f"{each.env}: must be from 0 to 30 days, got {value!r}")
        if self.interval <= 0:
            raise ConfigError("GT_INTERVAL must be greater than 0")
        if self.heartbeat_kill < self.heartbeat_nudge:
            raise ConfigError(
                "GT_DEACON_HEARTBEAT_KILL must not be smaller than GT_DEACON_HEARTBEAT_NUDGE"
            )
        if self.git_timeout <= 0 or self.tmux_timeout <= 0 or self.bd_timeout <= 0:
            raise ConfigError("tool timeouts must be greater than 0")
        for knob in ("bd_bin", "gt_bin", "tmux_bin", "git_bin"):
            if not getattr(self, knob):
                raise ConfigError(f"{KNOB_BY_FIELD[knob].env} must not be empty")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def for_dialect(self, dialect: str) -> Settings:
        """These settings for a town of ``dialect`` (``j`` or ``l``): each knob the operator
        did not set takes the dialect's default from :data:`DIALECT_DEFAULTS`."""
        changes = {name: value for name, value in DIALECT_DEFAULTS.get(dialect, {}).items()
                   if name not in self.explicit and getattr(self, name) != value}
        return self.replace(**changes) if changes else self


# The defaults above are Gas Town's of January 2026 ([J]). A mid-2026 town ([L]) has other
# compile-time constants (gastown-2026.md §1.5a, §6.3, §6.12); a knob set by the operator
# (gastown.conf, the environment, a flag) always wins over both.
DIALECT_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "j": {},
    "l": {
        "heartbeat_nudge": 300.0,  # stale at 5 min: nudge, only while work is in progress
        "heartbeat_kill": 1200.0,  # very stale at 20 min: kill and restart (age >= 20 min)
        "deacon_grace": 300.0,  # a heartbeat older than our start is waited out 5 min
    },
}

assert {f.name for f in dataclasses.fields(Settings)} - {"explicit"} == set(KNOB_BY_FIELD), \
    "knob table drift"
assert all(set(d) <= set(KNOB_BY_FIELD) for d in DIALECT_DEFAULTS.values()), "dialect drift"


def load_with_sources(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None,
    *, rig: str | None = None,
) -> tuple[Settings, dict[str, str]]:
    """The settings and, per knob field, where its value came from: ``default``, a
    configuration file's path, ``environment`` or ``flag``.

    With ``environ`` omitted, the process environment and the configuration files the
    units read (``/etc/gastown/gastown.conf``, ``rigs/<rig>.conf``; ``GT_CONFIG``). With an
    explicit ``environ`` the files are read only when it names one in ``GT_CONFIG``.
    """
    env = os.environ if environ is None else environ
    if environ is None or CONFIG_ENV in env:
        sources = layers(env, rig)
    else:
        sources = Layers((Layer("environment", dict(env)),))
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for knob in KNOBS:
        found = sources.lookup(knob.env)
        if found is None:
            continue
        raw, source = found
        try:
            values[knob.field] = knob.parse(raw)
        except ValueError as exc:
            where = "" if source == "environment" else f" (in {source})"
            raise ConfigError(f"{knob.env}{where}: {exc}") from None
        origin[knob.field] = source
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
            origin[name] = "flag"
    settings = Settings(**values, explicit=frozenset(origin))
    settings.check()
    return settings, {k.field: origin.get(k.field, "default") for k in KNOBS}


def default_of(field: str) -> Any:
    """The default of a knob; the dataclass above is the only place defaults are written."""
    return getattr(Settings(), field)
