"""Small helpers to read and write the town's JSON files the way Gas Town does."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GO_ZERO_TIME = "0001-01-01T00:00:00Z"


MAX_FILE_BYTES = 16 * 1024 * 1024  # no town or state file is anywhere near this


class DamagedFile(ValueError):
    """A town or state file exists but cannot be read as what it should be.

    A ValueError, so that every caller that already withholds action on a malformed file
    does so for a directory, a dangling symlink, bad bytes or wrong types too; the message
    always starts with the file's path, so the journal and ``STATUS=`` name it.
    """

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path = path
        self.why = why
        note_damage(path, why)


# Damage met during the current pass: path -> why. The service loop takes it after each
# pass and says it in STATUS= (a damaged file blocks something until it is repaired, and a
# status that reads like a normal pass would hide that).
_damage_this_pass: dict[Path, str] = {}


def note_damage(path: Path, why: str) -> None:
    """Record that ``path`` was found damaged in this pass (first reason kept)."""
    _damage_this_pass.setdefault(path, why)


def take_damage() -> dict[Path, str]:
    """The damage met since the last call, and forget it."""
    found = dict(_damage_this_pass)
    _damage_this_pass.clear()
    return found


def read_bytes(path: Path, *, limit: int = MAX_FILE_BYTES) -> bytes | None:
    """The file's bytes; ``None`` only when nothing is there at all.

    A dangling symlink, a directory, an unreadable or oversized file is DamagedFile, never
    "missing": a missing settings file means "defaults", a damaged one must not.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        if path.is_symlink():
            raise DamagedFile(path, "dangling symlink") from None
        return None
    except IsADirectoryError:
        raise DamagedFile(path, "is a directory, not a file") from None
    except NotADirectoryError:
        raise DamagedFile(path, "a parent of it is not a directory") from None
    except OSError as exc:
        raise DamagedFile(path, f"unreadable ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise DamagedFile(path, f"larger than {limit} bytes")
    return data


def read_text(path: Path, *, limit: int = MAX_FILE_BYTES, shown_only: bool = False
              ) -> str | None:
    """The file as UTF-8 text (``None`` if missing); invalid UTF-8 is DamagedFile unless the
    text is only shown (``shown_only``: decoded with replacement characters)."""
    data = read_bytes(path, limit=limit)
    if data is None:
        return None
    try:
        return data.decode("utf-8", errors="replace" if shown_only else "strict")
    except UnicodeDecodeError as exc:
        raise DamagedFile(path, f"not UTF-8 (byte {exc.start})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 30:  # no field of ours needs more; keeps float() total
        raise ValueError(f"integer of {len(text)} digits")
    return int(text)


def parse_json(text: str) -> Any:
    """``json.loads`` that refuses NaN, Infinity, overflowing numbers and huge integers;
    ValueError for all of them and for too deep nesting."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite,
                          parse_int=_bounded_int)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def read_json(path: Path) -> Any:
    """Parsed JSON of ``path``; ``None`` if the file is missing. DamagedFile otherwise."""
    text = read_text(path)
    if text is None:
        return None
    if not text.strip():
        raise DamagedFile(path, "empty file")
    try:
        return parse_json(text)
    except json.JSONDecodeError as exc:
        raise DamagedFile(path, f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except ValueError as exc:
        raise DamagedFile(path, str(exc)) from None


def read_json_object(path: Path) -> dict[str, Any] | None:
    """A JSON object file; ``None`` if missing, DamagedFile if damaged or not an object."""
    data = read_json(path)
    if data is not None and not isinstance(data, dict):
        raise DamagedFile(path, f"not a JSON object (a {type(data).__name__})")
    return data


def set_aside(path: Path, why: object) -> None:
    """Rename a damaged state file of ours to ``<name>.bad`` (one warning), so that the
    service goes on with a fresh state and the damaged one is kept for a human."""
    aside = path.with_name(path.name + ".bad")
    try:
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside)  # an older .bad of ours: the newest damage is kept
        elif aside.is_symlink() or aside.exists():
            aside.unlink()
        path.replace(aside)
    except OSError as exc:
        log.error("%s is unreadable (%s) and cannot be set aside (%s): using a fresh "
                  "state", path, why, exc.strerror or exc)
    else:
        log.warning("%s was unreadable (%s): set aside as %s, using a fresh state",
                    path, why, aside.name)


def read_json_or_set_aside(path: Path) -> Any:
    """Like :func:`read_json`, but a damaged file is renamed ``<name>.bad`` (one warning)
    and read as missing: our own state files must never stop a service."""
    try:
        return read_json(path)
    except ValueError as exc:
        set_aside(path, getattr(exc, "why", exc))
        return None


def read_state_object(path: Path) -> dict[str, Any]:
    """One of our own state files as an object: ``{}`` when missing; a damaged one, or one
    that is not an object, is set aside and read as ``{}``."""
    data = read_json_or_set_aside(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        set_aside(path, f"not a JSON object (a {type(data).__name__})")
        return {}
    return data


def write_json_atomic(path: Path, data: Any, mode: int = 0o644) -> None:
    """Write indented JSON to a temporary file, fsync it, rename it over ``path`` and fsync
    the directory: readers never see half a file, and a crash keeps the old or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def parse_time(text: object) -> datetime | None:
    """Parse an RFC 3339 timestamp (Go's, with up to nanoseconds); ``None`` if unusable."""
    if not isinstance(text, str) or not text or text.startswith("0001-01-01"):
        return None
    raw = text.strip().replace("Z", "+00:00")
    if "." in raw:  # Python accepts at most 6 fractional digits
        head, _, rest = raw.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        raw = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def format_time(value: datetime | None) -> str:
    """RFC 3339 in UTC, or Go's zero time for ``None`` (Go always emits time fields)."""
    if value is None:
        return GO_ZERO_TIME
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
