"""A service's setup and pass run inside the fuzz worker, so that 10,000 inputs per service
take minutes, not hours.

What costs a subprocess run is Python starting, once for the service and once for each
``bd``/``gt`` stand-in call. Here the service runs through ``gastown_units.cli.main`` (the
same argument parsing, settings and ``run_service`` as the units) and every ``runner.run``
of a stand-in calls that stand-in's ``main(argv)`` in this process, with the working
directory, environment, stdin and stdout a real child would get. tmux, git and the agent
stay real programs (a private ``tmux -L`` server).

A crash: an exception out of ``main``, an exit status other than 0, 1 or 78, a log record
that carries a traceback (``contain.report`` logs a bug's traceback and goes on), or no end
within ``TIMEOUT``.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import io
import logging
import os
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

TIMEOUT = 60.0
# Fixed pauses inside a step (the bypass-dialog wait, the nudge debounce) are cut to this
# share: the fuzz is about input, not timing, and the pauses are most of a pass.
SLEEP_SHARE = 0.02
OK_CODES = (0, 1, 78)


class InProcessCrash(Exception):
    """The service crashed; ``kind`` and ``where`` name the failure (as the harness shows)."""

    def __init__(self, kind: str, message: str, where: str, stderr: str = "") -> None:
        super().__init__(f"{kind}: {message}")
        self.kind, self.where, self.stderr = kind, where, stderr


class _Hang(Exception):
    pass


_MODULES: dict[Path, ModuleType] = {}


def standin(path: Path) -> ModuleType:
    """The stand-in script at ``path`` loaded as a module (once per worker)."""
    path = path.resolve()
    module = _MODULES.get(path)
    if module is None:
        name = f"gtu_fuzz_standin_{path.name}"
        loader = importlib.machinery.SourceFileLoader(name, str(path))
        spec = importlib.util.spec_from_loader(name, loader)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        _MODULES[path] = module
    return module


@contextlib.contextmanager
def _as_child(cwd: Path | None, env: Mapping[str, str], stdin: str | None
              ) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """This process dressed as a child: its cwd, environment and standard streams."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved = sys.stdin, sys.stdout, sys.stderr
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.clear()
        os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin or ""), out, err
        yield out, err
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


class StandinRunner:
    """A replacement for ``runner.run``: stand-ins in process, anything else for real.

    ``fault`` (tool, command word, rc, stdout bytes, stderr bytes) answers that one command
    of that tool with the given output, as a broken or different tool version would.
    """

    def __init__(self, real: Any, standins: Mapping[str, Path],
                 fault: Mapping[str, Any] | None = None) -> None:
        self.real = real
        self.standins = {str(p): name for name, p in standins.items()}
        self.paths = dict(standins)
        self.fault = fault
        self.calls = 0

    def __call__(self, argv: Sequence[str], *, timeout: float, cwd: Path | None = None,
                 env: Mapping[str, str] | None = None, stdin: str | None = None) -> Any:
        from gastown_units.ports import runner
        tool = self.standins.get(str(argv[0])) if argv else None
        if tool is None:
            return self.real(argv, timeout=timeout, cwd=cwd, env=env, stdin=stdin)
        args, environment = runner._prepare(argv, cwd, env)  # the same checks as a real run
        self.calls += 1
        fault = self.fault
        if fault is not None and fault["tool"] == tool and args[1:2] == (fault["command"],):
            return runner.Result(args, fault["rc"],
                                 fault["out"].decode("utf-8", "replace"),
                                 fault["err"].decode("utf-8", "replace"))
        module = standin(self.paths[tool])
        with _as_child(cwd, environment, stdin) as (out, err):
            try:
                code = module.main(list(args[1:]))
            except module.Exit as exc:
                code = exc.code
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except Exception:  # noqa: BLE001 - a crashing child: a traceback, status 1
                import traceback
                err.write(traceback.format_exc())
                code = 1
        return runner.Result(args, int(code or 0), out.getvalue(), err.getvalue())


class _Records(logging.Handler):
    """Every record a pass logs; the harness looks for tracebacks among them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _where(exc: BaseException) -> str:
    from bench.fuzz.harness import _where as where  # the harness's own rule (lazy: cycle)
    return where(exc)


def run_service(argv: Sequence[str], standins: Mapping[str, Path],
                fault: Mapping[str, Any] | None) -> int:
    """``gastown-units <argv>`` in this process; raises InProcessCrash, returns the code."""
    from gastown_units import cli
    from gastown_units.ports import runner
    from gastown_units.runtime import contain, logs, loop

    records = _Records()
    setup = logs.setup_logging  # what a unit's run calls (launch.run_unit), looked up then

    def logging_and_capture(*args: Any, **kwargs: Any) -> None:
        setup(*args, **kwargs)
        logging.getLogger().addHandler(records)

    def alarm(_signum: int, _frame: FrameType | None) -> None:
        raise _Hang(f"no end within {TIMEOUT:g}s")

    real = runner.run
    real_sleep = loop.Context.sleep

    def short_sleep(ctx: Any, seconds: float) -> None:
        real_sleep(ctx, seconds * SLEEP_SHARE)
    previous_disable = logging.root.manager.disable
    saved_env = dict(os.environ)
    saved_handlers = list(logging.getLogger().handlers)
    saved_level = logging.getLogger().level
    old_alarm = signal.signal(signal.SIGALRM, alarm)
    err = io.StringIO()
    contain._seen.clear()  # a bug's traceback must show every time, not once per process
    try:
        for key in [k for k in os.environ if k.startswith("GT_")
                    or k in ("TMUX", "TMUX_PANE", "NOTIFY_SOCKET", "WATCHDOG_USEC")]:
            del os.environ[key]
        patches: tuple[tuple[Any, str, Any], ...] = (
            (runner, "run", StandinRunner(real, standins, fault)),
            (logs, "setup_logging", logging_and_capture), (loop.Context, "sleep", short_sleep))
        for owner, name, value in patches:
            setattr(owner, name, value)
        logging.disable(logging.NOTSET)
        signal.setitimer(signal.ITIMER_REAL, TIMEOUT)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = cli.main(list(argv))
            except _Hang as exc:
                raise InProcessCrash("Hang", str(exc), _where(exc), err.getvalue()) from None
            except Exception as exc:  # noqa: BLE001 - anything out of main is a crash
                raise InProcessCrash(type(exc).__name__, str(exc), _where(exc),
                                     err.getvalue()) from exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_alarm)
        restore: tuple[tuple[Any, str, Any], ...] = (
            (runner, "run", real), (logs, "setup_logging", setup),
            (loop.Context, "sleep", real_sleep))
        for owner, name, value in restore:
            setattr(owner, name, value)
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
        logging.disable(previous_disable)
        os.environ.clear()
        os.environ.update(saved_env)
    for record in records.records:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            kind = "Hang" if isinstance(error, _Hang) else type(error).__name__
            raise InProcessCrash(kind, str(error), _where(error), err.getvalue())
        if "traceback logged before" in record.getMessage():
            raise InProcessCrash("repeated bug", record.getMessage()[:200], "log",
                                 err.getvalue())
    if any(line.startswith("Traceback (most recent call last)")
           for line in err.getvalue().splitlines()):
        raise InProcessCrash("Traceback", "on stderr", "stderr", err.getvalue())
    if code not in OK_CODES:
        tail = err.getvalue().strip().splitlines()
        raise InProcessCrash(f"exit status {code}", tail[-1][:200] if tail else "", "main",
                             err.getvalue())
    return code
