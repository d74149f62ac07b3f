"""The fuzz benchmark's short run for the services (``bench/fuzz``): 30 generated towns
per service, each service's setup and one pass in process against a private tmux server,
no crash allowed — and a planted bug is counted as one, so the run can fail.
"""

from __future__ import annotations

import pytest

from bench.fuzz.harness import crash_lines, fuzz, select
from bench.fuzz.targets import PORT, PURE, SERVICE

COUNT = 30
SEED = 20261202  # fixed: a failure here is reproducible with --seed 20261202

TARGETS = select([], [SERVICE])


@pytest.mark.parametrize("target", TARGETS, ids=[t.name.split()[1] for t in TARGETS])
def test_no_crash(target, tmp_path) -> None:
    [result] = fuzz([target], {PURE: 0, PORT: 0, SERVICE: COUNT}, seed=SEED,
                    out=str(tmp_path))
    assert result.inputs == COUNT
    if result.count:
        pytest.fail(f"{target.name}: {result.count} of {COUNT} inputs crashed\n"
                    + "\n".join(crash_lines(result))
                    + f"\nreproduce: /usr/bin/python3 bench/fuzz --seed {SEED} "
                      f"--service-count {COUNT} --kinds service --only '{target.name}'",
                    pytrace=False)


def test_a_bug_in_a_pass_is_a_crash(tmp_path, monkeypatch) -> None:
    """A pass that raises (contained and logged by run_service, exit 1) still counts."""
    from gastown_units.services.refinery import Refinery

    def broken(self, ctx):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(Refinery, "tick", broken)
    [target] = select(["service refinery"], [SERVICE])
    [result] = fuzz([target], {PURE: 0, PORT: 0, SERVICE: 3}, seed=SEED, out=str(tmp_path))
    assert result.count == 3
    assert {c.kind for c in result.crashes} == {"ZeroDivisionError"}


def test_a_crashing_standin_is_a_failed_tool_not_a_crash(tmp_path, monkeypatch) -> None:
    """A stand-in that raises looks like a tool that died with a traceback (status 1)."""
    from bench.fuzz import inprocess
    from tests.harness.town import STANDINS

    module = inprocess.standin(STANDINS / "bd")

    def broken(argv):
        raise RecursionError("planted in bd")

    monkeypatch.setattr(module, "main", broken)
    [target] = select(["service polecat-health"], [SERVICE])
    [result] = fuzz([target], {PURE: 0, PORT: 0, SERVICE: 3}, seed=SEED, out=str(tmp_path))
    assert result.inputs == 3
    assert result.count == 0, crash_lines(result)
