"""A throwaway systemd 252 booted as PID 1 of private namespaces, over an overlay root.

The recipe is shared/reference/systemd-sandbox.md. The guest gets its own root: an overlay
with the host's ``/`` as the read-only lower layer and a tmpfs as the upper one, so every
write of the guest (apt, journald, systemd-tmpfiles, ``/tmp``) lands in memory and the host
stays untouched. NEVER boot systemd on the real root: its tmpfiles run wiped the host /tmp.

Isolation beyond the recipe: UTS and IPC namespaces (systemd sets the hostname), ``/sys``
and ``/proc/sys`` read-only (as systemd-nspawn does), a private ``/dev/shm``, the guest's
``/dev/console`` bound to the boot log, and a cgroup subtree of its own (so that guests do
not share ``system.slice`` with each other, and the subtree can be removed afterwards).
A host ``/usr/sbin/policy-rc.d`` is removed inside the guest, so that maintainer scripts
start and stop units as on a real Debian machine.

Typical use::

    with GuestSystemd() as guest:
        guest.install_deb(deb)
        guest.systemctl("start", "gastown-tmux.service")
        guest.wait_for(lambda: guest.show("gastown-tmux.service", "ActiveState")
                       ["ActiveState"] == "active", timeout=10, what="tmux unit active")
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from tests.harness.poll import poll_until

T = TypeVar("T")

SYSTEMD = "/lib/systemd/systemd"
GUEST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
BOOT_TARGET = "harness-guest.target"
_PR_SET_PDEATHSIG = 1
_NAME_RE = re.compile(r"^gastown-guest-(\d+)-[0-9a-f]{8}(\.|$)")

# Runs as PID 1 of the new PID and mount namespaces (the child of ``unshare --fork``).
# Arguments: the tmpfs mount point, the boot target, the PID file, the cgroup name, and the
# file that stands in for the guest's /dev/console.
_BOOT_SCRIPT = r"""
set -euo pipefail
fs=$1 target=$2 pidfile=$3 cgname=$4 console=$5

# Our PID in the HOST namespace: /proc is still the host's proc here.
read -r hostpid _ </proc/self/stat

# A cgroup subtree of our own in the hierarchies systemd tracks processes in; systemd
# takes its own cgroup as its root and creates init.scope, system.slice... below it.
while read -r _ mnt fstype opts _; do
	case $fstype in
	cgroup2) ;;
	cgroup) case ",$opts," in *,name=systemd,*) ;; *) continue ;; esac ;;
	*) continue ;;
	esac
	mkdir -p "$mnt/$cgname"
	echo $$ >"$mnt/$cgname/cgroup.procs"
done </proc/self/mounts

mount -t tmpfs -o mode=0700 gastown-guest "$fs"
mkdir "$fs/upper" "$fs/work" "$fs/merged"
mount -t overlay gastown-guest -o "lowerdir=/,upperdir=$fs/upper,workdir=$fs/work" "$fs/merged"
root=$fs/merged

mount -t proc proc "$root/proc"
mount --bind "$root/proc/sys" "$root/proc/sys"
mount -o remount,bind,ro "$root/proc/sys"
if [ -e "$root/proc/sysrq-trigger" ]; then
	mount --bind "$root/proc/sysrq-trigger" "$root/proc/sysrq-trigger"
	mount -o remount,bind,ro "$root/proc/sysrq-trigger"
fi
mount --rbind /sys "$root/sys"
mount -o remount,bind,ro "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
if [ -e "$root/dev/console" ]; then
	mount --bind "$console" "$root/dev/console"
fi
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$root/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"

mkdir -p "$root/run/systemd/system"
printf '[Unit]\nDescription=test guest (minimal boot target)\n' >"$root/run/systemd/system/$target"

echo "$hostpid" >"$pidfile.new"
mv "$pidfile.new" "$pidfile"
export container=other
exec chroot "$root" /lib/systemd/systemd --system --unit="$target" --log-target=console
"""


class GuestBootError(RuntimeError):
    """The guest did not come up; the message ends with the tail of its boot log."""


class GuestCommandError(subprocess.CalledProcessError):
    """A command inside the guest failed; ``str()`` shows its stdout and stderr."""

    def __str__(self) -> str:
        return (f"guest command {self.cmd!r} exited with status {self.returncode}\n"
                f"--- stdout ---\n{self.stdout or ''}\n--- stderr ---\n{self.stderr or ''}")


def wait_for(predicate: Callable[[], T], *, timeout: float, interval: float = 0.2,
             what: str) -> T:
    """Poll ``predicate`` until truthy (see :func:`tests.harness.poll.poll_until`)."""
    return poll_until(predicate, timeout=timeout, interval=interval, what=what)


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the test process dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, fs type, options) of every mount in the host's mount namespace."""
    result = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 4:
            point = fields[1].encode().decode("unicode_escape")  # \040 for spaces
            result.append((point, fields[2], fields[3]))
    return result


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rpartition(")")[2].split()


def _parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def _children_of(ppid: int) -> list[int]:
    """Host PIDs of the children of ``ppid`` (scans /proc; no CONFIG_PROC_CHILDREN needed)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _parent_of(int(entry.name)) == ppid:
            children.append(int(entry.name))
    return children


def _rmdir_tree(base: Path) -> bool:
    """rmdir ``base`` and every directory below it, deepest first; True if it is gone.

    Only rmdir: for a cgroup tree that still holds processes this removes nothing."""
    for dirpath, _, _ in sorted(os.walk(base), key=lambda walk: -len(walk[0])):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)
    return not base.exists()


def _owner_gone(name: str) -> bool:
    """Whether the test process named in a guest's name (``gastown-guest-PID-...``) is gone."""
    match = _NAME_RE.match(name)
    return match is not None and not Path(f"/proc/{match.group(1)}").exists()


def reap_stale_guests() -> None:
    """Remove what guests of killed test processes left behind (their guest died with them,
    see ``_die_with_parent``): empty cgroup trees and work directories. Conservative: a
    cgroup with processes cannot be rmdir'ed, and a work directory whose PID 1 still exists
    or that has anything mounted below it is kept."""
    mounts = _mounts()
    for point, fstype, _ in mounts:
        if fstype in ("cgroup", "cgroup2"):
            for base in Path(point).glob("gastown-guest-*"):
                if base.is_dir() and _owner_gone(base.name):
                    _rmdir_tree(base)
    for workdir in Path(tempfile.gettempdir()).glob("gastown-guest-*"):
        if not workdir.is_dir() or not _owner_gone(workdir.name):
            continue
        with contextlib.suppress(FileNotFoundError, ValueError):
            if Path(f"/proc/{int((workdir / 'pid1').read_text())}").exists():
                continue
        if not any(p == str(workdir) or p.startswith(f"{workdir}/") for p, _, _ in mounts):
            shutil.rmtree(workdir, ignore_errors=True)


def _alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


class GuestSystemd:
    """A booted guest systemd; a context manager that always tears the guest down.

    ``pid1`` is the guest's PID 1 as a host PID; ``root`` is its root directory as the host
    sees it (``/proc/PID1/root``). Reading plain files through ``root`` is fine, but an
    absolute symlink inside the guest resolves against the HOST root there: use
    ``read_file``/``write_file``, which run inside the guest, for anything else.
    """

    def __init__(self, workdir: Path | None = None, *, boot_timeout: float = 90) -> None:
        self._parent_dir = Path(workdir) if workdir is not None else None
        self.boot_timeout = boot_timeout
        self.name = f"gastown-guest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.workdir: Path | None = None
        self.pid1: int = 0
        self.root: Path = Path("/nonexistent")
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None
        self._console: Path | None = None
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> GuestSystemd:
        try:
            self.boot()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def boot(self) -> None:
        """Start the guest and wait until it is running, with journald up."""
        if self._proc is not None:
            raise RuntimeError("this guest was already booted")
        reap_stale_guests()
        if self._parent_dir is not None:
            self._parent_dir.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.name}.", dir=self._parent_dir))
        atexit.register(self.close)
        script = self.workdir / "boot.sh"
        script.write_text(_BOOT_SCRIPT)
        self._log = self.workdir / "boot.log"
        self._console = self.workdir / "console.log"
        self._console.touch()
        pidfile = self.workdir / "pid1"
        (self.workdir / "fs").mkdir()
        deadline = time.monotonic() + self.boot_timeout

        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(
                ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc",
                 "--propagation", "private", "--kill-child",
                 "/bin/bash", str(script), str(self.workdir / "fs"), BOOT_TARGET,
                 str(pidfile), self.name, str(self._console)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={"PATH": GUEST_PATH, "LANG": "C.UTF-8"},
                start_new_session=True, preexec_fn=_die_with_parent)

        self.pid1 = self._wait_boot(lambda: self._read_pid1(pidfile), deadline, "guest PID 1")
        self.root = Path(f"/proc/{self.pid1}/root")
        self._wait_boot(lambda: self._comm(self.pid1) == "systemd", deadline,
                        "systemd to be exec'd")
        self._wait_boot(self._system_running, deadline, "systemctl is-system-running")
        self.systemctl("start", "systemd-journald.socket", "systemd-journald.service")
        # A Docker-style policy-rc.d (exit 101) on the host would make every maintainer
        # script's deb-systemd-invoke a no-op; a real Debian machine has none. This removes
        # it from the guest's overlay only.
        self.run(["rm", "-f", "/usr/sbin/policy-rc.d"])

    def close(self) -> None:
        """Kill the guest (by PID), unmount what is left, remove its files. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        problems: list[str] = []
        for step in (self._kill, self._unmount_leftovers, self._remove_cgroups,
                     self._remove_workdir):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - finish the teardown, report at the end
                problems.append(f"{step.__name__}: {exc!r}")
        if problems:
            raise RuntimeError("guest teardown incomplete: " + "; ".join(problems))

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            # PID 1 of the guest is unshare's child; all guest processes die with it.
            targets = [self.pid1] if self.pid1 and _parent_of(self.pid1) == proc.pid \
                else _children_of(proc.pid)
            for pid in targets:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()  # unshare is our own child; --kill-child takes its child along
                proc.wait(timeout=30)
        if self.pid1:
            wait_for(lambda: not _alive(self.pid1), timeout=30, interval=0.05,
                     what=f"guest PID 1 ({self.pid1}) to exit")

    def _unmount_leftovers(self) -> None:
        """Mounts live in the guest's private mount namespace and vanish with it; this only
        catches any that leaked into the host's namespace (propagation gone wrong)."""
        if self.workdir is None:
            return
        prefix = str(self.workdir)
        leaked = [point for point, _, _ in _mounts()
                  if point == prefix or point.startswith(prefix + "/")]
        for point in sorted(leaked, key=len, reverse=True):
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, check=True)

    def _remove_cgroups(self) -> None:
        """Remove the guest's cgroup subtree (empty once every guest process is gone)."""
        for point, fstype, _ in _mounts():
            if fstype not in ("cgroup", "cgroup2"):
                continue
            base = Path(point) / self.name
            if base.is_dir():
                wait_for(lambda base=base: _rmdir_tree(base), timeout=10, interval=0.1,
                         what=f"removal of {base}")

    def _remove_workdir(self) -> None:
        if self.workdir is None or not self.workdir.exists():
            return
        prefix = str(self.workdir)
        if any(p == prefix or p.startswith(prefix + "/") for p, _, _ in _mounts()):
            raise RuntimeError(f"not removing {prefix}: something is still mounted below it")
        shutil.rmtree(self.workdir)

    # -- boot helpers ---------------------------------------------------------------------

    def _wait_boot(self, probe: Callable[[], T], deadline: float, what: str) -> T:
        while True:
            value = probe()
            if value:
                return value
            if self._proc is not None and self._proc.poll() is not None:
                raise GuestBootError(f"guest exited (status {self._proc.returncode}) while "
                                     f"waiting for {what}\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise GuestBootError(f"timed out after {self.boot_timeout:g}s waiting for "
                                     f"{what} (last: {value!r})\n{self.log_tail()}")
            time.sleep(0.05)

    def _read_pid1(self, pidfile: Path) -> int:
        """The host PID that execs systemd, once the boot script has written it."""
        try:
            pid = int(pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return 0
        assert self._proc is not None
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return 0  # already gone: _wait_boot sees unshare exit and reports the log
        nspid = next(line.split()[1:] for line in status.splitlines()
                     if line.startswith("NSpid:"))
        if _parent_of(pid) != self._proc.pid or nspid[-1] != "1":
            raise GuestBootError(f"PID {pid} from {pidfile} is not PID 1 of the guest "
                                 f"(NSpid {nspid}, parent {_parent_of(pid)})")
        return pid

    @staticmethod
    def _comm(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/comm").read_text().strip()
        except FileNotFoundError:
            return ""

    def _system_running(self) -> str:
        state = self.run(["systemctl", "is-system-running"], check=False, timeout=10)
        return state.stdout.strip() if state.stdout.strip() in ("running", "degraded") else ""

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the boot script's output and of the guest's console."""
        parts = []
        for label, path in (("boot log", self._log), ("guest console", self._console)):
            if path is not None and path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {label} (tail) ---\n" + "\n".join(text))
        return "\n".join(parts) or "(no boot log)"

    # -- commands inside the guest --------------------------------------------------------

    def _passwd(self, user: str) -> tuple[int, int, str]:
        """(uid, gid, home) of ``user`` from the guest's /etc/passwd."""
        for line in self.run(["getent", "passwd", user]).stdout.splitlines():
            fields = line.split(":")
            if len(fields) >= 7 and fields[0] == user:
                return int(fields[2]), int(fields[3]), fields[5]
        raise KeyError(f"no user {user!r} in the guest")

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 60,
            input: str | None = None, user: str | None = None,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the guest (its namespaces and root) with a clean environment.

        ``user``: run as that guest user (setpriv, with its HOME); ``env``: extra variables.
        """
        if not self.pid1 or self._closed:
            raise RuntimeError("the guest is not running")
        variables = {"PATH": GUEST_PATH, "LANG": "C.UTF-8", "TERM": "dumb",
                     "HOME": "/root", "USER": "root", "LOGNAME": "root",
                     "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
        prefix = ["nsenter", "-t", str(self.pid1), "-m", "-u", "-i", "-p", "-r", "-w", "--"]
        if user is not None:
            uid, gid, home = self._passwd(user)
            variables.update(HOME=home, USER=user, LOGNAME=user)
            prefix += ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--"]
        variables.update(env or {})
        command = [*prefix, "env", "-i", *(f"{k}={v}" for k, v in variables.items()), *argv]
        try:
            result = subprocess.run(command, input=input, capture_output=True, text=True,
                                    timeout=timeout, env={"PATH": GUEST_PATH},
                                    stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise GuestCommandError(-1, list(argv), _text(exc.stdout),
                                    f"timed out after {timeout:g}s\n{_text(exc.stderr)}"
                                    ) from None
        if check and result.returncode != 0:
            raise GuestCommandError(result.returncode, list(argv), result.stdout,
                                    result.stderr)
        return result

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", *args], check=check)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """``systemctl show`` of ``unit`` as a dict (only ``props`` if given)."""
        argv = ["show", unit] + (["-p", ",".join(props)] if props else [])
        values: dict[str, str] = {}
        for line in self.systemctl(*argv).stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key] = value
        return values

    def journal(self, *args: str) -> str:
        """``journalctl --no-pager ARGS`` output (exit 1, e.g. no --grep match, is fine)."""
        result = self.run(["journalctl", "--no-pager", *args], check=False)
        if result.returncode not in (0, 1):
            raise GuestCommandError(result.returncode, ["journalctl", *args], result.stdout,
                                    result.stderr)
        return result.stdout

    def wait_for(self, predicate: Callable[[], T], *, timeout: float, interval: float = 0.2,
                 what: str) -> T:
        return wait_for(predicate, timeout=timeout, interval=interval, what=what)

    def write_file(self, path: str, content: str, mode: int = 0o644,
                   owner: str | None = None) -> None:
        """Create or replace ``path`` (absolute, in the guest) with ``content``."""
        if not path.startswith("/"):
            raise ValueError(f"guest path must be absolute: {path!r}")
        self.run(["sh", "-c", 'mkdir -p -- "$(dirname -- "$1")" && cat >"$1" && chmod "$2" "$1"',
                  "write_file", path, f"{mode:o}"], input=content)
        if owner is not None:
            self.run(["chown", "--", owner, path])

    def read_file(self, path: str) -> str:
        return self.run(["cat", "--", path]).stdout

    def install_deb(self, deb: Path, *, reinstall: bool = False) -> str:
        """Copy ``deb`` into the guest and ``apt-get install`` it there; return its guest path.

        The copy goes to /var/tmp, not /tmp: any unit with default dependencies pulls in
        systemd-tmpfiles-setup.service, which empties the guest's /tmp. ``reinstall`` runs
        the package's upgrade paths (postinst configure OLD-VERSION) with the same .deb.
        """
        name = Path(deb).name
        for part in ("var", "var/tmp"):
            if (self.root / part).is_symlink() or not (self.root / part).is_dir():
                raise RuntimeError(f"guest /{part} is not a plain directory")
        shutil.copyfile(deb, self.root / "var/tmp" / name)
        os.chmod(self.root / "var/tmp" / name, 0o644)
        target = f"/var/tmp/{name}"
        self.run(["apt-get", "install", "-y", "--no-install-recommends",
                  *(["--reinstall"] if reinstall else []), target],
                 env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=600)
        return target

    def add_user(self, name: str) -> int:
        """``useradd -m NAME`` in the guest; return its uid."""
        self.run(["useradd", "-m", "-s", "/bin/bash", name])
        return self._passwd(name)[0]


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
