"""The systemd ring: a real systemd 252 booted in private namespaces, the .deb installed.

``deb_path`` builds the package once per session with packaging/build-deb (or takes
$GASTOWN_DEB); ``guest`` boots one guest per test module with the package installed.
Without root or without /lib/systemd/systemd these tests skip, or fail when $CI is set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.harness.guest import SYSTEMD, GuestSystemd  # noqa: E402

HERE = Path(__file__).resolve().parent


def _missing() -> str | None:
    """Why a guest systemd cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (boots systemd in private namespaces)"
    if not Path(SYSTEMD).exists():
        return f"no {SYSTEMD}"
    for tool in ("unshare", "nsenter", "setpriv"):
        if shutil.which(tool) is None:
            return f"no {tool} on PATH"
    return None


def require_guest_support() -> None:
    """Skip (or fail under CI) when this machine cannot boot a guest systemd."""
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"systemd ring cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.systemd)


@pytest.fixture(scope="session")
def guest_supported() -> None:
    """For tests that boot their own guest: skip (or fail under CI) where none can run."""
    require_guest_support()


@pytest.fixture(scope="session")
def deb_path() -> Path:
    """The package under test: $GASTOWN_DEB, or built once by packaging/build-deb."""
    require_guest_support()
    given = os.environ.get("GASTOWN_DEB")
    if given:
        path = Path(given).resolve()
        if not path.is_file():
            pytest.fail(f"GASTOWN_DEB={given} is not a file", pytrace=False)
        return path
    build = subprocess.run([str(REPO / "packaging" / "build-deb")], cwd=REPO,
                           capture_output=True, text=True, timeout=1200)
    if build.returncode != 0:
        pytest.fail(f"packaging/build-deb failed (exit {build.returncode})\n"
                    f"{build.stdout}\n{build.stderr}", pytrace=False)
    path = Path(build.stdout.strip().splitlines()[-1])
    assert path.is_file(), f"build-deb printed {path}, which is not a file"
    return path


@pytest.fixture(scope="module")
def guest(deb_path: Path) -> Iterator[GuestSystemd]:
    """A booted guest systemd with the package installed (one per test module)."""
    require_guest_support()
    with GuestSystemd() as booted:
        booted.install_deb(deb_path)
        yield booted
