"""The harness itself: a guest boot leaves the host's /tmp, mounts and processes alone."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.harness.guest import GuestBootError, GuestCommandError, GuestSystemd, wait_for

pytestmark = pytest.mark.usefixtures("guest_supported")


def _guest_mounts(guest: GuestSystemd) -> list[str]:
    """Host mount table lines that mention this guest's work directory."""
    assert guest.workdir is not None
    return [line for line in Path("/proc/mounts").read_text().splitlines()
            if str(guest.workdir) in line]


def test_guest_tmp_is_not_the_host_tmp() -> None:
    tag = uuid.uuid4().hex
    host_sentinel = Path("/tmp") / f"gastown-host-sentinel-{tag}"
    host_sentinel.write_text("host\n")
    try:
        before = set(os.listdir("/tmp"))
        with GuestSystemd() as guest:
            marker = f"/tmp/gastown-guest-marker-{tag}"
            guest.write_file(marker, "guest\n")
            assert guest.read_file(marker) == "guest\n"
            assert not Path(marker).exists(), "a file written in the guest's /tmp hit the host"
            assert guest.run(["test", "-e", str(host_sentinel)], check=False).returncode != 0
            guest_tmp = set(guest.run(["ls", "-A", "/tmp"]).stdout.split())
            new_on_host = set(os.listdir("/tmp")) - before
            assert not new_on_host & guest_tmp, f"guest /tmp entries on the host: {new_on_host}"
            assert guest.run(["hostname"]).stdout  # its own UTS namespace answers
        assert host_sentinel.read_text() == "host\n", "the guest touched the host's /tmp"
    finally:
        host_sentinel.unlink(missing_ok=True)


def test_exit_kills_pid1_and_leaves_no_mount() -> None:
    with pytest.raises(RuntimeError, match="boom"), GuestSystemd() as guest:
        pid1 = guest.pid1
        assert Path(f"/proc/{pid1}/status").exists()
        assert guest.show("systemd-journald.service", "ActiveState")["ActiveState"] == "active"
        overlay = guest.run(["findmnt", "-n", "-o", "FSTYPE", "/"]).stdout.strip()
        assert overlay == "overlay"
        assert not _guest_mounts(guest), "the guest's mounts leaked into the host namespace"
        raise RuntimeError("boom")  # teardown must also happen on failure
    wait_for(lambda: not Path(f"/proc/{pid1}").exists(), timeout=5, what="pid1 gone")
    assert not _guest_mounts(guest)
    assert guest.workdir is not None and not guest.workdir.exists()
    with pytest.raises(RuntimeError):
        guest.run(["true"])  # closed guests refuse commands
    leftover = [p for p in Path("/sys/fs/cgroup").glob(f"*/{guest.name}")]
    assert not leftover, f"cgroups left behind: {leftover}"


def test_failed_boot_is_torn_down(tmp_path: Path) -> None:
    guest = GuestSystemd(tmp_path, boot_timeout=0.01)
    with pytest.raises(GuestBootError), guest:
        pass
    assert guest.workdir is not None and not guest.workdir.exists()
    assert guest._proc is not None and guest._proc.poll() is not None
    if guest.pid1:
        assert not Path(f"/proc/{guest.pid1}").exists()


def test_failed_command_shows_output() -> None:
    with GuestSystemd() as guest:
        with pytest.raises(GuestCommandError) as info:
            guest.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        assert info.value.returncode == 3
        assert "out" in str(info.value) and "err" in str(info.value)
