"""The fuzz benchmark's short run (``bench/fuzz``): a few hundred generated inputs per pure
entry point (readers, parsers, pure service logic, configuration), no crash allowed.

The ports (fake binaries) and the services (real processes, tmux) run only in the full
benchmark: ``/usr/bin/python3 bench/fuzz --count 10000 --workers 2``.
"""

from __future__ import annotations

import pytest

from bench.fuzz.harness import crash_lines, fuzz, select
from bench.fuzz.targets import PORT, PURE, SERVICE

COUNT = 300
SEED = 20261201  # fixed: a failure here is reproducible with --seed 20261201

TARGETS = select([], [PURE])


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_no_crash(target, tmp_path) -> None:
    [result] = fuzz([target], {PURE: COUNT, PORT: 0, SERVICE: 0}, seed=SEED,
                    out=str(tmp_path))
    assert result.inputs == COUNT
    if result.count:
        pytest.fail(f"{target.name}: {result.count} of {COUNT} inputs crashed "
                    f"(contract: {target.contract}; accepted: "
                    f"{', '.join(e.__name__ for e in target.accepted)})\n"
                    + "\n".join(crash_lines(result))
                    + f"\nreproduce: /usr/bin/python3 bench/fuzz --seed {SEED} "
                      f"--count {COUNT} --kinds pure --only '{target.name}'",
                    pytrace=False)
