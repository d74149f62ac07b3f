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


def make_rig_repos(rig_dir: Path) -> Path:
    """``.repo.git`` with one commit on main and ``mayor/rig`` cloned from it; the clone."""
    bare = rig_dir / ".repo.git"
    seed = rig_dir / ".seed"
    git(rig_dir, "init", "-q", "--bare", "-b", "main", str(bare))
    git(rig_dir, "init", "-q", "-b", "main", str(seed))
    (seed / "README").write_text("rig\n")
    git(seed, "add", "README")
    git(seed, "commit", "-q", "-m", "initial")
    git(seed, "push", "-q", str(bare), "main")
    clone = rig_dir / "mayor" / "rig"
    if clone.exists():
        clone.rmdir()
    git(rig_dir, "clone", "-q", str(bare), str(clone))
    # The stand-in agent keeps its files in .agent/ of its cwd: not the polecat's work.
    (clone / ".git" / "info" / "exclude").write_text(".agent/\n")
    subprocess.run(["rm", "-rf", str(seed)], check=True)
    return clone


def add_polecat(rig_dir: Path, rig: str, name: str) -> Path:
    """A polecat worktree in the new layout, on branch ``polecat/<name>`` of the clone."""
    tree = rig_dir / "polecats" / name / rig
    tree.parent.mkdir(parents=True, exist_ok=True)
    git(rig_dir / "mayor" / "rig", "worktree", "add", "-q", "-b", f"polecat/{name}",
        str(tree))
    return tree


def branches(clone: Path) -> set[str]:
    return set(git(clone, "for-each-ref", "--format=%(refname:short)", "refs/heads").split())


def age_worktree(tree: Path, when: float) -> None:
    """Set every activity file of the worktree to the time ``when`` (epoch seconds)."""
    gitdir = Path(git(tree, "rev-parse", "--absolute-git-dir").strip())
    for path in (tree / ".git", gitdir / "logs" / "HEAD", gitdir / "index"):
        if path.exists():
            os.utime(path, (when, when))
