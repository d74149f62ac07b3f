"""Logging to journald with structured fields, or to stderr outside systemd.

Every record carries ``GT_ROLE`` and, where known, ``GT_RIG``; pass ``extra={"GT_AGENT": …}``
for records about one agent, so ``journalctl GT_ROLE=deacon`` or ``GT_AGENT=…`` finds them.
"""

from __future__ import annotations

import logging
import os
import sys

from gastown_units.runtime.journal_send import JournalSender


def under_journal() -> bool:
    """True when our stderr is connected to journald (systemd sets ``JOURNAL_STREAM``)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    if not stream or ":" not in stream:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    dev, _, ino = stream.partition(":")
    return f"{st.st_dev}:{st.st_ino}" == f"{dev}:{ino}"


class _Fields(logging.Filter):
    """Adds the service's constant fields to every record (for the stderr format too)."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__()
        self.fields = fields

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.fields.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def setup_logging(identifier: str, *, role: str, rig: str | None = None,
                  debug: bool = False) -> None:
    """Route the root logger to journald (fields) or stderr (plain lines)."""
    fields = {"GT_ROLE": role}
    if rig:
        fields["GT_RIG"] = rig
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if under_journal():
        handler = JournalSender({"SYSLOG_IDENTIFIER": identifier, **fields})
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s " + identifier + ": %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(_Fields(fields))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
