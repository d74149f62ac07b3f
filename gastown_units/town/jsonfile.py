"""Small helpers to read and write the town's JSON files the way Gas Town does."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def read_json(path: Path) -> Any:
    """Parsed JSON of ``path``; ``None`` if the file is missing. Raises ValueError if malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def read_json_or_set_aside(path: Path) -> Any:
    """Like :func:`read_json`, but a damaged file is renamed ``<name>.bad`` (one warning)
    and read as missing: our own state files must never stop a service."""
    try:
        return read_json(path)
    except (ValueError, OSError, RecursionError) as exc:
        aside = path.with_name(path.name + ".bad")
        try:
            path.replace(aside)
        except OSError as why:
            log.error("%s is unreadable (%s) and cannot be set aside (%s): using a fresh "
                      "state", path, exc, why.strerror)
        else:
            log.warning("%s was unreadable (%s): set aside as %s, using a fresh state",
                        path, exc, aside.name)
        return None


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
