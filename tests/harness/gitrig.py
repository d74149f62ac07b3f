"""Real git repositories for a rig: the shared bare repo, the mayor's clone, polecat worktrees."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True, timeout=60, env=env).stdout


def make_rig_repos(rig_dir: Path, *, refspec: bool = True) -> Path:
    """The rig's repositories as Gas Town lays them out (gastown.md §1.4); the mayor's clone.

    An upstream (what ``git_url`` names) with one commit on main; ``.repo.git``, the shared
    bare clone of it (so it has ``origin``, and polecat worktrees come from it), with the
    fetch refspec Gas Town sets on it since January 2026 (``refspec=False``: a rig made
    before, whose ``git fetch origin`` updates only ``FETCH_HEAD``); and
    ``mayor/rig``, the mayor's clone of the upstream (a push there lands upstream). The
    rig's beads database in ``mayor/rig/.beads`` (:func:`tests.harness.town.make_rig_db`)
    is kept across the clone.
    """
    bare = rig_dir / ".repo.git"
    upstream = rig_dir.parent / ".upstream" / f"{rig_dir.name}.git"
    seed = rig_dir / ".seed"
    upstream.parent.mkdir(parents=True, exist_ok=True)
    git(rig_dir, "init", "-q", "--bare", "-b", "main", str(upstream))
    git(rig_dir, "init", "-q", "-b", "main", str(seed))
    (seed / "README").write_text("rig\n")
    git(seed, "add", "README")
    git(seed, "commit", "-q", "-m", "initial")
    git(seed, "push", "-q", str(upstream), "main")
    git(rig_dir, "clone", "-q", "--bare", str(upstream), str(bare))
    if refspec:  # Gas Town's configureRefspec (a91e6cd64, 2026-01-08): origin/* for worktrees
        git(bare, "config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*")
        git(bare, "fetch", "-q", "origin")
    clone = rig_dir / "mayor" / "rig"
    kept = rig_dir / ".beads-kept"
    if (clone / ".beads").exists():
        (clone / ".beads").rename(kept)
    if clone.exists():
        clone.rmdir()
    git(rig_dir, "clone", "-q", str(upstream), str(clone))
    if kept.exists():
        kept.rename(clone / ".beads")
    # The stand-in agent keeps its files in .agent/ of its cwd, the rig's beads database
    # is not the mayor's work: neither makes the clone dirty.
    (clone / ".git" / "info" / "exclude").write_text(".agent/\n.beads/\n")
    subprocess.run(["rm", "-rf", str(seed)], check=True)
    return clone


def add_polecat(rig_dir: Path, rig: str, name: str) -> Path:
    """A polecat worktree in the new layout, on branch ``polecat/<name>``, made from the
    rig's shared bare repository ``.repo.git`` as [J] Gas Town makes it (gastown.md §1.4)."""
    tree = rig_dir / "polecats" / name / rig
    tree.parent.mkdir(parents=True, exist_ok=True)
    git(rig_dir / ".repo.git", "worktree", "add", "-q", "-b", f"polecat/{name}", str(tree),
        "main")
    exclude = rig_dir / ".repo.git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    exclude.write_text(".agent/\n")
    return tree


def branches(clone: Path) -> set[str]:
    return set(git(clone, "for-each-ref", "--format=%(refname:short)", "refs/heads").split())


def age_worktree(tree: Path, when: float) -> None:
    """Set every activity file of the worktree to the time ``when`` (epoch seconds)."""
    gitdir = Path(git(tree, "rev-parse", "--absolute-git-dir").strip())
    for path in (tree / ".git", gitdir / "logs" / "HEAD", gitdir / "index"):
        if path.exists():
            os.utime(path, (when, when))
