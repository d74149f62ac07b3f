"""Shared helpers for the stand-in ``bd``, ``gt`` and ``agent`` executables.

Stdlib only.  Everything here follows the documented behaviour of beads and
Gas Town (tests/standins/README.md); nothing is copied from the real Go tools.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# ---------------------------------------------------------------------------
# Town discovery
# ---------------------------------------------------------------------------


def find_town(cwd: str | None = None) -> Path | None:
    """Town root: ``BD_STANDIN_TOWN`` > walk up for ``mayor/town.json`` > ``GT_TOWN_ROOT``.

    Like Gas Town, when the start path is inside ``/polecats/`` or ``/crew/`` the
    *outermost* ``mayor/town.json`` wins (rigs may carry their own ``mayor/``).
    """
    override = os.environ.get("BD_STANDIN_TOWN")
    if override:
        return Path(override)
    try:
        start = Path(cwd or os.getcwd()).resolve()
    except OSError:
        start = None
    if start is not None:
        outermost = "/polecats/" in f"{start}/" or "/crew/" in f"{start}/"
        found: Path | None = None
        for d in (start, *start.parents):
            if (d / "mayor" / "town.json").is_file():
                found = d
                if not outermost:
                    break
        if found is not None:
            return found
    env_root = os.environ.get("GT_TOWN_ROOT")
    if env_root and (Path(env_root) / "mayor" / "town.json").is_file():
        return Path(env_root)
    return None


def standin_dir(town: Path) -> Path:
    return town / ".standin"


# ---------------------------------------------------------------------------
# Database routing (beads.md §7.1, §7.6)
# ---------------------------------------------------------------------------


def follow_redirect(beads: Path) -> Path:
    """One hop of ``.beads/redirect`` (relative to the directory holding ``.beads``)."""
    redirect = beads / "redirect"
    if redirect.is_file():
        target = (_read_text_or_empty(redirect)).strip()
        if target:
            tp = Path(target)
            return tp if tp.is_absolute() else (beads.parent / tp)
    return beads


def _read_text_or_empty(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def route_target(town: Path | None, prefix: str) -> Path | None:
    """The database ``prefix`` (with its hyphen) routes to, or None (beads.md §7.6).

    ``<town>/.beads/routes.jsonl``: blank, ``#`` and malformed lines skipped; ``path: "."``
    is the town's own ``.beads``; the redirect is followed; the target must exist.
    """
    if town is None:
        return None
    for line in _read_text_or_empty(town / ".beads" / "routes.jsonl").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            route = json.loads(line)
        except ValueError:
            continue
        if not isinstance(route, dict) or route.get("prefix") != prefix:
            continue
        path = route.get("path")
        if not isinstance(path, str) or not path:
            continue
        base = town if path.strip() in (".", "./") else town / path
        target = follow_redirect(base / ".beads")
        if os.environ.get("BD_DEBUG_ROUTING") == "1":
            sys.stderr.write(f"[routing] {prefix} -> {target}\n")
        return target if target.is_dir() else None
    return None


def same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False



# ---------------------------------------------------------------------------
# Call log and fault injection
# ---------------------------------------------------------------------------

LOGGED_ENV = (
    "GT_ROLE",
    "GT_RIG",
    "GT_POLECAT",
    "GT_CREW",
    "BD_ACTOR",
    "BEADS_NO_DAEMON",
    "BEADS_DIR",
    "GT_ROOT",
)


def append_line(path: Path, line: str) -> None:
    """Append one line with a single O_APPEND write (atomic for small lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def log_call(town: Path, tool: str, argv: list[str]) -> None:
    rec = {
        "tool": tool,
        "argv": argv,
        "cwd": os.getcwd(),
        "ts": go_time(now_local()),
        "pid": os.getpid(),
        "env": {k: os.environ[k] for k in LOGGED_ENV if k in os.environ},
    }
    with contextlib.suppress(OSError):
        append_line(standin_dir(town) / "calls.jsonl", json.dumps(rec, ensure_ascii=False))


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def check_faults(town: Path, tool: str, command: str | None) -> None:
    """Apply ``<tool>.hang``, ``<tool>.fail`` and ``<tool>.delay`` knobs.

    Each knob also exists per command: ``bd.fail.show`` only hits ``bd show``.
    """
    sd = standin_dir(town)

    def knob(kind: str) -> Path | None:
        for base in (f"{tool}.{kind}", f"{tool}.{kind}.{command}" if command else None):
            if base and (sd / base).exists():
                return sd / base
        return None

    if knob("hang") is not None:
        while True:  # sleep until killed, no output
            time.sleep(3600)
    delay = knob("delay")
    if delay is not None:
        with contextlib.suppress(ValueError):
            time.sleep(float((_read_text(delay) or "0").strip() or 0))
    fail = knob("fail")
    if fail is not None:
        msg = (_read_text(fail) or "").strip() or "injected failure"
        sys.stderr.write(f"Error: {msg}\n")
        sys.stderr.flush()
        sys.exit(1)


def bd_mode(town: Path | None) -> str:
    """``O`` (direct mode, default), ``daemon`` (O through the daemon's RPC) or ``N``.

    An [L] town (``gt_dialect`` L) runs bd 1.0.5 (gastown-2026.md header [B]): ``N`` even
    without a ``bd.mode`` knob."""
    txt = (_read_text(standin_dir(town) / "bd.mode") or "").strip() if town else ""
    if txt.upper().startswith("N") or gt_dialect(town) == "L":
        return "N"
    return "daemon" if txt.lower() == "daemon" else "O"


def gt_dialect(town: Path | None) -> str:
    """``J`` (January 2026, default) or ``L`` (mid-2026): ``<town>/.standin/gt.dialect``,
    else ``GT_STANDIN_DIALECT``. [L] also means bd 1.0.5 (gastown-2026.md header)."""
    txt = ""
    if town is not None:
        txt = (_read_text(standin_dir(town) / "gt.dialect") or "").strip()
    txt = txt or os.environ.get("GT_STANDIN_DIALECT", "")
    return "L" if txt.upper().startswith("L") else "J"


def l_socket_name(town_root: str) -> str:
    """The [L] tmux socket of a town (gastown-2026.md §3.0): ``GT_TMUX_SOCKET`` verbatim
    unless unset/``default``/``auto``; else ``<base>-<sha256(canonical)[:6]>``."""
    import hashlib
    import re

    given = os.environ.get("GT_TMUX_SOCKET", "")
    if given and given not in ("default", "auto"):
        return given
    base = re.sub(r"[^a-z0-9-]+", "-", os.path.basename(town_root.rstrip("/")).lower())
    base = base.strip("-") or "default"
    try:
        canonical = os.path.realpath(town_root, strict=True)
    except OSError:
        canonical = os.path.abspath(town_root)
    return f"{base}-{hashlib.sha256(canonical.encode()).hexdigest()[:6]}"


def tmux_argv(town: Path, *args: str) -> list[str]:
    """How this town's ``gt`` calls tmux: [J] bare ``tmux`` on the default server (or the
    socket in ``GT_STANDIN_TMUX_SOCKET``, for tests on private servers); [L] ``tmux -u -L
    <socket>`` (§3.0)."""
    binary = os.environ.get("GT_STANDIN_TMUX", "tmux")
    if gt_dialect(town) == "L":
        return [binary, "-u", "-L", l_socket_name(str(town)), *args]
    sock = os.environ.get("GT_STANDIN_TMUX_SOCKET")
    return [binary, *(["-L", sock] if sock else []), *args]


# ---------------------------------------------------------------------------
# Time helpers (Go RFC3339 / RFC3339Nano formatting)
# ---------------------------------------------------------------------------


def now_local() -> _dt.datetime:
    """Local wall-clock time with offset (honours ``TZ``, e.g. TZ=PST8PDT)."""
    return _dt.datetime.now().astimezone()


def now_utc() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _offset(dt: _dt.datetime) -> str:
    off = dt.utcoffset() or _dt.timedelta(0)
    if off == _dt.timedelta(0):
        return "Z"
    total = int(off.total_seconds())
    sign = "+" if total >= 0 else "-"
    total = abs(total)
    return f"{sign}{total // 3600:02d}:{(total % 3600) // 60:02d}"


def go_time(dt: _dt.datetime) -> str:
    """Go ``time.RFC3339Nano``: trailing zeros of the fraction trimmed, ``Z`` for UTC."""
    if dt.tzinfo is None:
        dt = dt.astimezone()
    s = dt.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{dt.microsecond:06d}".rstrip("0")
    if frac:
        s += "." + frac
    return s + _offset(dt)


def go_time_seconds(dt: _dt.datetime) -> str:
    """Go ``time.RFC3339`` (whole seconds)."""
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + _offset(dt)


def parse_time(s: str | None) -> _dt.datetime | None:
    if not s or not isinstance(s, str):
        return None
    txt = s.strip()
    try:
        dt = _dt.datetime.fromisoformat(txt.replace("Z", "+00:00"))
    except ValueError:
        # Trim fractions longer than 6 digits (Go nanoseconds) and retry.
        head, dot, rest = txt.partition(".")
        if not dot:
            return None
        digits = ""
        for ch in rest:
            if not ch.isdigit():
                break
            digits += ch
        tail = rest[len(digits) :]
        try:
            dt = _dt.datetime.fromisoformat(f"{head}.{digits[:6]}{tail}".replace("Z", "+00:00"))
        except ValueError:
            return None
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return dt


# ---------------------------------------------------------------------------
# JSON output
# ---------------------------------------------------------------------------


def dump_json(obj: object) -> str:
    """Go ``json.MarshalIndent(v, "", "  ")`` plus newline (no HTML escaping needed)."""
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def print_json(obj: object) -> None:
    sys.stdout.write(dump_json(obj))
    sys.stdout.flush()


def atomic_write(path: Path, data: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# Minimal flat YAML config (.beads/config.yaml)
# ---------------------------------------------------------------------------


def read_config(beads_dir: Path) -> dict[str, str]:
    cfg: dict[str, str] = {}
    txt = _read_text(beads_dir / "config.yaml")
    if not txt:
        return cfg
    for raw in txt.splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line or line.lstrip().startswith("#") or line.startswith((" ", "\t")):
            continue
        key, sep, val = line.partition(":")
        if not sep:
            continue
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] and val[0] in "\"'":
            val = val[1:-1]
        cfg[key.strip()] = val
    return cfg


def write_config_value(beads_dir: Path, key: str, value: str) -> None:
    path = beads_dir / "config.yaml"
    lines = (_read_text(path) or "").splitlines()
    out: list[str] = []
    done = False
    for line in lines:
        k = line.partition(":")[0].strip()
        if not line.startswith((" ", "\t", "#")) and k == key:
            out.append(f'{key}: "{value}"')
            done = True
        else:
            out.append(line)
    if not done:
        out.append(f'{key}: "{value}"')
    atomic_write(path, "\n".join(out) + "\n")


def issue_prefix(beads_dir: Path) -> str:
    cfg = read_config(beads_dir)
    pre = cfg.get("issue-prefix") or cfg.get("issue_prefix") or "hq"
    return pre.rstrip("-") or "hq"


# ---------------------------------------------------------------------------
# Issue store: <beads>/issues.jsonl, flock on <beads>/.standin.lock
# ---------------------------------------------------------------------------

ALWAYS_PRESENT = ("id", "title", "priority", "created_at", "updated_at")

# Key order follows the Go Issue struct (embedded fields first), then relations.
ISSUE_KEYS = (
    "id", "title", "description", "design", "acceptance_criteria", "notes",
    "status", "priority", "issue_type", "assignee", "owner", "estimated_minutes",
    "created_at", "created_by", "updated_at", "closed_at", "close_reason",
    "closed_by_session", "due_at", "defer_until", "external_ref", "source_system",
    "compaction_level", "compacted_at", "compacted_at_commit", "original_size",
    "deleted_at", "deleted_by", "delete_reason", "original_type",
    "sender", "ephemeral", "pinned", "is_template", "bonded_from",
    "creator", "validations", "quality_score", "crystallizes",
    "await_type", "await_id", "timeout", "waiters", "holder",
    "source_formula", "source_location",
    "hook_bead", "role_bead", "agent_state", "last_activity", "role_type", "rig",
    "mol_type", "work_type", "event_kind", "actor", "target", "payload",
)  # fmt: skip
RELATION_KEYS = ("labels", "dependencies", "dependents", "comments", "parent")


def is_empty(v: object) -> bool:
    return (
        v is None
        or v == ""
        or v is False
        or v == []
        or v == {}
        or (isinstance(v, int) and not isinstance(v, bool) and v == 0)
    )


def clean_issue(issue: dict) -> dict:
    """Order keys like Go and drop omitempty fields that are empty."""
    out: dict = {}
    known = set(ISSUE_KEYS) | set(RELATION_KEYS)
    for k in ISSUE_KEYS:
        if k in issue and (k in ALWAYS_PRESENT or not is_empty(issue[k])):
            out[k] = issue[k]
    for k, v in issue.items():
        if k not in known and not k.startswith("_") and not is_empty(v):
            out[k] = v
    for k in RELATION_KEYS:
        if k in issue and not is_empty(issue[k]):
            out[k] = issue[k]
    for k in ALWAYS_PRESENT:
        out.setdefault(k, 0 if k == "priority" else "")
    return out


class Store:
    def __init__(self, beads_dir: Path) -> None:
        self.dir = beads_dir
        self.path = beads_dir / "issues.jsonl"
        self.lock_path = beads_dir / ".standin.lock"

    def load(self) -> dict[str, dict]:
        issues: dict[str, dict] = {}
        txt = _read_text(self.path)
        if not txt:
            return issues
        for line in txt.splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if not isinstance(obj, dict) or not obj.get("id"):
                continue
            obj.setdefault("status", "open")  # import defaults (SetDefaults)
            obj.setdefault("issue_type", "task")
            obj.setdefault("priority", 2)
            obj.setdefault("title", "")
            issues[str(obj["id"])] = obj
        return issues

    def save(self, issues: dict[str, dict]) -> None:
        lines = [
            json.dumps(clean_issue(issues[k]), ensure_ascii=False, separators=(",", ":"))
            for k in sorted(issues)
        ]
        atomic_write(self.path, "".join(line + "\n" for line in lines))

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, dict]]:
        """Read-modify-write under an exclusive flock; saved on normal exit."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            issues = self.load()
            yield issues
            self.save(issues)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id(prefix: str, existing: dict | set, length: int = 5) -> str:
    while True:
        cand = f"{prefix}-" + "".join(secrets.choice(BASE36) for _ in range(length))
        if cand not in existing:
            return cand


# ---------------------------------------------------------------------------
# Cobra-like argument parsing
# ---------------------------------------------------------------------------


class UsageError(Exception):
    """A cobra-style usage error (printed as ``Error: <msg>`` + usage)."""


class FlagSpec:
    def __init__(
        self,
        bools: dict[str, str] | None = None,
        values: dict[str, str] | None = None,
        multi: set[str] | None = None,
    ) -> None:
        self.bools = dict(bools or {})
        self.values = dict(values or {})
        self.multi = set(multi or ())

    def merged(self, other: FlagSpec) -> FlagSpec:
        return FlagSpec(
            {**self.bools, **other.bools},
            {**self.values, **other.values},
            self.multi | other.multi,
        )


def parse_flags(argv: list[str], spec: FlagSpec) -> tuple[list[str], dict[str, object]]:
    """Parse ``--k=v``, ``--k v``, ``-k v``, ``-k=v``, boolean ``--flag[=true|false]``.

    Returns (positionals, options).  Repeatable value flags (``spec.multi``)
    collect lists; others keep the last value.
    """
    pos: list[str] = []
    opts: dict[str, object] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok == "--":
            pos.extend(argv[i:])
            break
        if not tok.startswith("-") or tok == "-":
            pos.append(tok)
            continue
        name, eq, val = tok.partition("=")
        if name in spec.bools:
            key = spec.bools[name]
            if eq:
                opts[key] = val.lower() not in ("false", "0", "f", "no")
            else:
                opts[key] = True
            continue
        if name in spec.values:
            key = spec.values[name]
            if not eq:
                if i >= len(argv):
                    shown = name if name.startswith("--") else f"'{name[1:]}' in {name}"
                    raise UsageError(f"flag needs an argument: {shown}")
                val = argv[i]
                i += 1
            if key in spec.multi:
                lst = opts.setdefault(key, [])
                assert isinstance(lst, list)
                lst.append(val)
            else:
                opts[key] = val
            continue
        if name.startswith("--"):
            raise UsageError(f"unknown flag: {name}")
        raise UsageError(f"unknown shorthand flag: '{name[1:2]}' in {tok}")
    return pos, opts


def split_csv(values: object) -> list[str]:
    """Flatten repeatable, comma-separated flag values."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values:  # type: ignore[union-attr]
        out.extend(p.strip() for p in str(v).split(",") if p.strip())
    return out


# ---------------------------------------------------------------------------
# Gas Town mail addresses / identity
# ---------------------------------------------------------------------------


def normalize_address(addr: str) -> str:
    a = (addr or "").strip()
    if a in ("mayor", "mayor/"):
        return "mayor/"
    if a in ("deacon", "deacon/"):
        return "deacon/"
    parts = [p for p in a.split("/") if p != ""]
    if len(parts) == 3 and parts[1] in ("polecats", "crew"):
        return f"{parts[0]}/{parts[2]}"
    return a


def identity_from_env(town: Path | None = None) -> str:
    """Sender/recipient identity: GT_ROLE(+GT_RIG/GT_POLECAT/GT_CREW) > cwd > overseer."""
    env = os.environ
    role = env.get("GT_ROLE", "").strip()
    rig = env.get("GT_RIG", "").strip()
    if role:
        if "/" in role:  # compound form, e.g. "gastown/witness"
            return normalize_address(role)
        r = role.lower()
        if r == "mayor":
            return "mayor/"
        if r == "deacon":
            return "deacon/"
        if r == "boot":
            return "deacon/boot"
        if r in ("witness", "refinery") and rig:
            return f"{rig}/{r}"
        if r == "polecat" and rig and env.get("GT_POLECAT"):
            return f"{rig}/{env['GT_POLECAT']}"
        if r == "crew" and rig and env.get("GT_CREW"):
            return f"{rig}/{env['GT_CREW']}"
    if rig and env.get("GT_POLECAT"):
        return f"{rig}/{env['GT_POLECAT']}"
    if rig and env.get("GT_CREW"):
        return f"{rig}/{env['GT_CREW']}"
    # cwd path detection relative to the town root
    if town is not None:
        try:
            rel = Path(os.getcwd()).resolve().relative_to(Path(town).resolve()).parts
        except (OSError, ValueError):
            rel = ()
        if rel:
            if rel[0] == "mayor":
                return "mayor/"
            if rel[0] == "deacon":
                return "deacon/"
            if len(rel) >= 3 and rel[1] in ("polecats", "crew"):
                return f"{rel[0]}/{rel[2]}"
            if len(rel) >= 2 and rel[1] in ("witness", "refinery"):
                return f"{rel[0]}/{rel[1]}"
    return "overseer"
