"""``python3 bench/fuzz`` (or ``python3 -m bench.fuzz``) from the repository root."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.fuzz.harness import main  # noqa: E402 - after the path is set

if __name__ == "__main__":
    sys.exit(main())
