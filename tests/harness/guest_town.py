"""A town inside a guest systemd: owner user, stand-ins, configuration, drop-ins.

Used by the systemd ring and by the demo, so both set things up exactly as the README
tells an operator to.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.harness.guest import GuestSystemd
from tests.harness.town import STANDINS, make_town

STANDIN_DIR = "/usr/local/lib/gastown-standins"


def install_standins(guest: GuestSystemd) -> None:
    """Stand-in ``bd``/``gt`` on the guest's PATH and the stand-in agent beside them."""
    target = guest.root / STANDIN_DIR.lstrip("/")
    shutil.copytree(STANDINS, target, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.md"))
    for tool in ("bd", "gt"):
        guest.run(["ln", "-sf", f"{STANDIN_DIR}/{tool}", f"/usr/local/bin/{tool}"])


def make_owner_town(guest: GuestSystemd, owner: str, rigs: dict[str, str] | None = None,
                    dialect: str = "J") -> str:
    """Create user ``owner`` and a town in its home ([J] or [L], as that era's ``gt``
    builds it); return the town path in the guest."""
    guest.add_user(owner)
    path = f"/home/{owner}/gt"
    make_town(guest.root / path.lstrip("/"), rigs=rigs, dialect=dialect)
    guest.run(["chown", "-R", f"{owner}:{owner}", path])
    return path


def new_town(guest: GuestSystemd, owner: str, rigs: dict[str, str] | None = None,
             dialect: str = "J") -> str:
    """Everything a test town in a guest needs: PID 1's unit messages in the journal,
    the stand-ins, the owner and the town; returns the town path."""
    guest.run(["systemd-analyze", "set-log-target", "journal-or-kmsg"])
    install_standins(guest)
    return make_owner_town(guest, owner, rigs=rigs, dialect=dialect)


def configure(guest: GuestSystemd, owner: str, settings: dict[str, str]) -> None:
    """Write /etc/gastown/gastown.conf and the owner drop-in (``User=``, and the town in
    ``ReadWritePaths=``: the supervisors' sandbox is read-only elsewhere), as the README
    says."""
    conf = "".join(f"{key}={value}\n" for key, value in settings.items())
    guest.write_file("/etc/gastown/gastown.conf", conf)
    town = settings.get("GT_TOWN_ROOT")
    writable = f"ReadWritePaths=-{town}\n" if town else ""
    guest.write_file("/etc/systemd/system/gastown-.service.d/owner.conf",
                     f"[Service]\nUser={owner}\n{writable}")
    guest.systemctl("daemon-reload")


def tmux_panes(guest: GuestSystemd, owner: str, socket: str | None = None
               ) -> dict[str, tuple[int, str]]:
    """Session name -> (pane PID, command) on the owner's default tmux server, or on
    ``tmux -L socket`` (an [L] town's own)."""
    result = guest.run(["tmux", "-N", *(["-L", socket] if socket else []), "list-panes",
                        "-a", "-F",
                        "#{session_name}\t#{pane_pid}\t#{pane_current_command}"],
                       user=owner, check=False)
    panes: dict[str, tuple[int, str]] = {}
    for line in result.stdout.splitlines():
        name, pid, command = line.split("\t")
        panes.setdefault(name, (int(pid), command))
    return panes


def agent_record(guest: GuestSystemd, workdir: str) -> dict | None:
    result = guest.run(["cat", f"{workdir}/.agent/record.json"], check=False)
    return json.loads(result.stdout) if result.returncode == 0 and result.stdout else None


def unit_of(guest: GuestSystemd, pid: int) -> str:
    """The systemd unit whose cgroup holds ``pid`` (guest PID)."""
    cgroup = guest.run(["cat", f"/proc/{pid}/cgroup"], check=False).stdout
    return Path(cgroup.strip().split(":")[-1]).name if cgroup else ""


# The rig's bare .repo.git with one commit on main, made once (as the owner, in the rig dir).
# The rig's repositories as tests/harness/gitrig.py makes them (gastown.md §1.4): an
# upstream with one commit, .repo.git a bare clone of it (with Gas Town's fetch refspec),
# mayor/rig the mayor's clone of the upstream (keeping the rig database in
# mayor/rig/.beads), polecat worktrees from .repo.git.
_SEED_REPO = """
set -eu
cd "$1"
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=t \\
       GIT_COMMITTER_EMAIL=t@example.com
upstream="$PWD/../.upstream/$(basename "$PWD").git"
seeded=no
if [ ! -d .repo.git ]; then
  mkdir -p "$(dirname "$upstream")"
  git init -q --bare -b main "$upstream"
  git init -q -b main .seed && echo rig > .seed/README
  git -C .seed add README && git -C .seed commit -q -m initial
  git -C .seed push -q "$upstream" main && rm -rf .seed
  git clone -q --bare "$upstream" .repo.git
  # Gas Town's configureRefspec (a91e6cd64, 2026-01-08): origin/* refs for the worktrees
  git -C .repo.git config remote.origin.fetch '+refs/heads/*:refs/remotes/origin/*'
  git -C .repo.git fetch -q origin
  echo .agent/ > .repo.git/info/exclude
  seeded=yes
fi
"""

_SETUP_RIG = _SEED_REPO + """
if [ "$seeded" = yes ]; then
  [ -d mayor/rig/.beads ] && mv mayor/rig/.beads .beads-kept
  rmdir mayor/rig && git clone -q "$upstream" mayor/rig
  [ -d .beads-kept ] && mv .beads-kept mayor/rig/.beads
  printf '.agent/\\n.beads/\\n' > mayor/rig/.git/info/exclude
fi
mkdir -p "polecats/$2"
git -C .repo.git worktree add -q -b "polecat/$2" "$PWD/polecats/$2/$3" main
"""

_CLONE_RIG = _SEED_REPO + """
rmdir "$2" 2>/dev/null || true
git clone -q "$PWD/.repo.git" "$2"
echo .agent/ > "$2/.git/info/exclude"
"""


def clone_rig_repo(guest: GuestSystemd, owner: str, town: str, rig: str, into: str) -> str:
    """A real git clone at ``<town>/<rig>/<into>`` (as the owner, inside the guest) of the
    rig's bare ``.repo.git`` (made with one commit on main if missing); returns its path."""
    guest.run(["sh", "-c", _CLONE_RIG, "clone", f"{town}/{rig}", into], user=owner)
    return f"{town}/{rig}/{into}"


_HOOK_WORK = """
set -eu
cd "$1"  # the rig: its work and agent beads live in its database (beads.md §7.6)
issue=$(/usr/local/bin/bd create --title="work for $2" --type=task --silent)
/usr/local/bin/bd create --json --id="$3" --title="Polecat $2" --type=agent \\
   --labels=gt:agent --force >/dev/null
/usr/local/bin/bd slot set "$3" hook "$issue" >/dev/null
"""


def add_polecat_with_work(guest: GuestSystemd, owner: str, town: str, rig: str, name: str,
                          prefix: str = "gt") -> str:
    """A real git worktree for polecat ``name`` and work hooked to its agent bead (as the
    owner, inside the guest); returns the worktree path."""
    guest.run(["sh", "-c", _SETUP_RIG, "setup", f"{town}/{rig}", name, rig], user=owner)
    guest.run(["sh", "-c", _HOOK_WORK, "hook", f"{town}/{rig}", name,
               f"{prefix}-{rig}-polecat-{name}"], user=owner)
    return f"{town}/{rig}/polecats/{name}/{rig}"


# Many polecats in one guest command: the rigs' lists are worked on by at most ``jobs``
# background shells at once (one rig's polecats in order: one git repository each), each
# polecat exactly as add_polecat_with_work makes it.
_BATCH = r"""
set -eu
setup=$1 hook=$2 jobs=$3
shift 3
one_rig() {
  while read -r rigdir name rig bead; do
    sh -c "$setup" setup "$rigdir" "$name" "$rig"
    sh -c "$hook" hook "$rigdir" "$name" "$bead"
  done <"$1"
}
# By PID (oldest first): `wait -n` may answer 127 for a job bash has already reaped.
status=0
pids=()
for list in "$@"; do
  if [ "${#pids[@]}" -ge "$jobs" ]; then
    wait "${pids[0]}" || status=$?
    pids=("${pids[@]:1}")
  fi
  one_rig "$list" &
  pids+=("$!")
done
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
exit $status
"""


def add_polecats_with_work(guest: GuestSystemd, owner: str, town: str,
                           polecats: dict[str, tuple[str, list[str]]], *, jobs: int = 2,
                           timeout: float = 3600) -> list[str]:
    """:func:`add_polecat_with_work` for many polecats in one guest command:
    ``polecats`` maps a rig to (its bead prefix, polecat names); rigs are built by up to
    ``jobs`` shells at once. Returns the worktree paths."""
    lists = []
    paths = []
    for index, (rig, (prefix, names)) in enumerate(polecats.items()):
        path = f"/var/tmp/gastown-polecats-{index}.list"
        lines = "".join(f"{town}/{rig} {name} {rig} {prefix}-{rig}-polecat-{name}\n"
                        for name in names)
        target = guest.root / path.lstrip("/")
        target.write_text(lines, encoding="utf-8")
        target.chmod(0o644)
        lists.append(path)
        paths += [f"{town}/{rig}/polecats/{name}/{rig}" for name in names]
    try:
        guest.run(["bash", "-c", _BATCH, "batch", _SETUP_RIG, _HOOK_WORK, str(jobs), *lists],
                  user=owner, timeout=timeout)
    finally:
        for path in lists:
            (guest.root / path.lstrip("/")).unlink(missing_ok=True)
    return paths
