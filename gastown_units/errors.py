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
