"""``gastown-units tmux-stop --main-pid PID``: gastown-tmux.service's ExecStop= line.

Says in the journal which agent sessions stopping the unit ends (its own server dies with
it) or leaves running (an adopted server lives outside the unit's cgroup). It only looks;
systemd does the stopping.
"""

from __future__ import annotations

import logging

import click

from gastown_units.config import Settings
from gastown_units.errors import GastownError
from gastown_units.ports.tmux import ServerDown, Tmux
from gastown_units.runtime.tmux_host import running_server, socket_label

log = logging.getLogger(__name__)


def stop_line(sessions: list[str], server_pid: int | None, main_pid: int | None,
              label: str) -> str:
    """Pure: the one journal line about what stopping the unit does to the sessions."""
    if server_pid is None:
        return f"no tmux server answers on {label}: no agent session to end"
    shown = ", ".join(sessions) if sessions else "none"
    if main_pid is not None and server_pid != main_pid:
        return (f"stopping; the adopted tmux server (PID {server_pid}) on {label} keeps "
                f"running with its {len(sessions)} session(s): {shown}")
    return (f"stopping the tmux server (PID {server_pid}) on {label}: ending "
            f"{len(sessions)} session(s): {shown}")


@click.command("tmux-stop")
@click.option("--main-pid", default=None, help="The unit's $MAINPID.")
def tmux_stop_cmd(main_pid: str | None) -> None:
    """Log which agent sessions stopping gastown-tmux.service ends (ExecStop=)."""
    from gastown_units.runtime.logs import setup_logging

    setup_logging("gastown-tmux", role="tmux")
    from gastown_units.ports.dialect_probe import for_town

    settings = for_town(Settings.load())[0]
    label = socket_label(settings.tmux_socket)
    pid = int(main_pid) if main_pid and main_pid.isdigit() else None
    try:
        server = running_server(settings.tmux_bin, settings.tmux_socket,
                                settings.tmux_timeout)
        sessions = sorted(Tmux(binary=settings.tmux_bin, socket=settings.tmux_socket,
                               timeout=settings.tmux_timeout).snapshot().sessions) \
            if server is not None else []
    except ServerDown:
        server, sessions = None, []
    except GastownError as exc:
        log.warning("stopping; cannot list the tmux sessions on %s: %s", label, exc)
        return
    log.info("%s", stop_line(sessions, server, pid, label))
