"""Small helpers to read and write the town's JSON files the way Gas Town does."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


def write_json_atomic(path: Path, data: Any, mode: int = 0o644) -> None:
    """Write indented JSON via a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
