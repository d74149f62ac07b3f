"""Error types and the exit codes they map to.

Expected failures carry a one-line message; the CLI prints it without a traceback.
"""

from __future__ import annotations

EX_OK = 0
EX_FAILURE = 1
EX_CONFIG = 78  # sysexits EX_CONFIG; units set RestartPreventExitStatus=78


class GastownError(Exception):
    """Base class for expected failures (one clear line, no traceback)."""

    exit_code = EX_FAILURE


class ConfigError(GastownError):
    """The town or the configuration is unusable; restarting will not help."""

    exit_code = EX_CONFIG


class TownError(ConfigError):
    """The town on disk is missing or malformed."""


class LockConflict(ConfigError):
    """Another supervisor (``gt daemon``) owns the town."""


class ToolError(GastownError):
    """An external tool (tmux, bd, gt, git) failed or did not answer: state unknown."""


class ToolTimeout(ToolError):
    """An external tool did not answer within its timeout."""


class ToolMissing(ToolError):
    """An external tool's binary is not installed."""


class BadInput(ToolError, ValueError):
    """A value from data (a file, a tool's output, a mail, a name) does not have the grammar
    it must have before it may reach an argv: refused before any program runs.

    A ToolError, because the question could not be asked, so the answer is unknown: every
    caller that already "does not judge" on a failed tool does the same here (design rule
    3). A ValueError too, so that readers which treat a bad name as unreadable still do.
    """
