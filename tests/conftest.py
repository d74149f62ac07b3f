"""Fixtures shared by the rings: a test town, a private tmux server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.harness.tmux_server import PrivateTmux
from tests.harness.town import make_town

# Fuzzing is about inputs, not speed: no per-example deadline on a loaded CI machine.
settings.register_profile("gastown", deadline=None)
settings.load_profile("gastown")


@pytest.fixture
def town(tmp_path: Path) -> Path:
    return make_town(tmp_path / "town")


@pytest.fixture
def tmux_server() -> Iterator[PrivateTmux]:
    server = PrivateTmux()
    try:
        yield server.start()
    finally:
        server.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "tmux" in parts:
            item.add_marker(pytest.mark.tmux)
