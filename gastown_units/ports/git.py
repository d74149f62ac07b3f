"""git, for a polecat's worktree and branch: status, worktree removal, branch deletion.

Every argv element from data goes through :mod:`gastown_units.ports.argv` or after ``--``:
branch names are checked by git's ref-name rules (``git pull`` has no ``--`` that works
for a refspec, and ``default_branch`` comes from a rig's ``config.json``: a value such as
``--upload-pack=CMD`` would make git run CMD); paths follow ``--``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from gastown_units.errors import BadInput, ToolError
from gastown_units.ports import runner
from gastown_units.ports.argv import checked_ref

#: Before a pre-sync's fetch and pull: no automatic maintenance (``gc --auto``). It would
#: cost a process on the way to a restart, and a gc it detached would be killed with the
#: oneshot sweep's cgroup when the sweep ends; the agents' own git commands run it.
NO_AUTO_MAINTENANCE = ("-c", "maintenance.auto=false", "-c", "gc.auto=0")
_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def git_dir(tree: Path) -> Path | None:
    """The checkout's own git directory: ``.git`` itself, or where a linked worktree's
    ``.git`` file points (``gitdir: PATH``, relative to the checkout); None if neither."""
    dot = tree / ".git"
    if dot.is_dir():
        return dot
    try:
        text = dot.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if not text.startswith("gitdir: "):
        return None
    return tree / text.removeprefix("gitdir: ").strip()


def fetched_tip(tree: Path, branch: str, *, since: float) -> str | None:
    """The object id that a fetch begun at ``since`` brought for ``branch`` of
    ``origin``, from the checkout's ``FETCH_HEAD`` (``<id> TAB [not-for-merge] TAB
    branch 'NAME' of URL``); None when that file is older, unreadable or has no such line."""
    directory = git_dir(tree)
    if directory is None:
        return None
    path = directory / "FETCH_HEAD"
    try:
        if os.stat(path).st_mtime < since - 1.0:  # not written by that fetch
            return None
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        fields = line.split("\t")
        if len(fields) == 3 and _OBJECT_ID.fullmatch(fields[0]) and \
                fields[2].startswith(f"branch '{branch}' of "):
            return fields[0]
    return None


class Git:
    def __init__(self, *, binary: str = "git", timeout: float = 30.0) -> None:
        self.binary = binary
        self.timeout = timeout

    def _run(self, cwd: Path, *args: str) -> runner.Result:
        return runner.run([self.binary, "-C", str(cwd), *args], timeout=self.timeout,
                          env={"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})

    def _check(self, cwd: Path, *args: str) -> str:
        result = self._run(cwd, *args)
        if not result.ok:
            raise ToolError(f"git {args[0]} in {cwd} failed: {result.error_line()}")
        return result.stdout

    def dirty_reason(self, tree: Path) -> str | None:
        """Why the worktree is not clean (uncommitted or untracked files), or None."""
        lines = self._check(tree, "status", "--porcelain").splitlines()
        if lines:
            return f"{len(lines)} uncommitted change(s), e.g. {lines[0].strip()}"
        return None

    def pre_sync(self, tree: Path, branch: str,
                 progress: Callable[[], None] | None = None) -> list[str]:
        """``git fetch origin`` then ``git pull --rebase origin BRANCH`` (§6.5 step 3).

        Never raises a tool failure: it is returned as a line for the log, and a failed
        fetch skips the pull. Returns the problems seen (empty when both worked).
        ``progress`` runs between the steps (it feeds the watchdog).

        The pull is left out when the fetch just brought ``BRANCH``'s tip and the
        checkout already contains it (the common case on a restart): the pull would fetch
        it again (a second round trip to the remote, on the way to every restart) and then
        have nothing to rebase. A tip that cannot be read from this fetch: the pull runs.
        """
        tick = progress or (lambda: None)
        problems: list[str] = []
        try:
            checked_ref(branch, "default_branch")
        except BadInput as exc:
            return [f"not synced: {exc}"]
        try:
            tick()
            began = time.time()
            fetch = self._run(tree, *NO_AUTO_MAINTENANCE, "fetch", "origin")
            tick()
            if not fetch.ok:
                return [f"git fetch origin failed: {fetch.error_line()}"]
            tip = fetched_tip(tree, branch, since=began)
            if tip is not None and self._run(tree, "merge-base", "--is-ancestor", tip,
                                             "HEAD").ok:
                return []
            pull = self._run(tree, *NO_AUTO_MAINTENANCE, "pull", "--rebase", "origin", branch)
            tick()
            if not pull.ok:
                problems.append(f"git pull --rebase origin {branch} failed: "
                                f"{pull.error_line()}")
        except ToolError as exc:
            problems.append(str(exc))
        return problems

    def common_dir(self, tree: Path) -> Path:
        """The repository that owns the worktree (``--git-common-dir``)."""
        out = self._check(tree, "rev-parse", "--path-format=absolute", "--git-common-dir")
        return Path(out.strip())

    def remove_worktree(self, repo: Path, tree: Path,
                        progress: Callable[[], None] | None = None) -> None:
        """``git worktree remove`` (after a clean check), then prune stale entries."""
        self._check(repo, "worktree", "remove", "--", str(tree))
        if progress:
            progress()
        self._check(repo, "worktree", "prune")

    def branch_exists(self, repo: Path, branch: str) -> bool:
        return self._run(repo, "rev-parse", "--verify", "--quiet",
                         f"refs/heads/{checked_ref(branch)}").ok

    def delete_merged_branch(self, repo: Path, branch: str) -> str | None:
        """``git branch -d``: deletes only a merged branch; returns why not, or None."""
        result = self._run(repo, "branch", "-d", "--", checked_ref(branch))
        if result.ok:
            return None
        if "not fully merged" in result.error_line() or "not fully merged" in result.stderr:
            return "not fully merged: kept, so that no commit is lost"
        raise ToolError(f"git branch -d {branch} in {repo} failed: {result.error_line()}")
