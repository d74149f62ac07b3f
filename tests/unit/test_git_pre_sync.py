"""The pre-sync of a polecat's worktree with real git (gastown.md §6.5 step 3): what lands
in the checkout, and that the pull is left out only when it would change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from gastown_units.ports.git import Git
from tests.harness.gitrig import add_polecat, git, make_rig_repos

RIG = "gastown"


def _rig(tmp_path: Path, *, refspec: bool = True) -> tuple[Path, Path]:
    rig = tmp_path / RIG
    rig.mkdir()
    clone = make_rig_repos(rig, refspec=refspec)
    return clone, add_polecat(rig, RIG, "nux")


def _land(clone: Path, name: str) -> str:
    """A commit on the upstream's main (as another polecat's merge would land it)."""
    (clone / name).write_text(f"{name}\n")
    git(clone, "add", name)
    git(clone, "commit", "-q", "-m", name)
    git(clone, "push", "-q", "origin", "main")
    return git(clone, "rev-parse", "HEAD").strip()


def _head(tree: Path) -> str:
    return git(tree, "rev-parse", "HEAD").strip()


@pytest.mark.parametrize("refspec", [True, False], ids=["refspec", "rig-before-2026-01-08"])
def test_new_commits_of_origin_are_pulled(tmp_path: Path, refspec: bool) -> None:
    clone, tree = _rig(tmp_path, refspec=refspec)
    landed = _land(clone, "NEWS")
    assert Git().pre_sync(tree, "main") == []
    assert (tree / "NEWS").exists()
    assert git(tree, "merge-base", "--is-ancestor", landed, "HEAD") == ""


def test_local_work_is_rebased_onto_origin(tmp_path: Path) -> None:
    clone, tree = _rig(tmp_path)
    (tree / "mine").write_text("the polecat's work\n")
    git(tree, "add", "mine")
    git(tree, "commit", "-q", "-m", "mine")
    landed = _land(clone, "NEWS")
    assert Git().pre_sync(tree, "main") == []
    assert (tree / "mine").exists() and (tree / "NEWS").exists()
    assert git(tree, "rev-parse", "HEAD~1").strip() == landed


def test_a_checkout_that_has_origins_tip_is_left_as_it_is(tmp_path: Path) -> None:
    """Nothing to pull: the pull is left out, so a dirty tree (which ``pull --rebase``
    refuses) is no failure, and local commits stay where they are."""
    _, tree = _rig(tmp_path)
    (tree / "mine").write_text("committed\n")
    git(tree, "add", "mine")
    git(tree, "commit", "-q", "-m", "mine")
    (tree / "README").write_text("an edit not committed yet\n")
    before = _head(tree)
    assert Git().pre_sync(tree, "main") == []
    assert _head(tree) == before
    assert (tree / "README").read_text() == "an edit not committed yet\n"


def test_a_dirty_checkout_behind_origin_is_not_touched(tmp_path: Path) -> None:
    clone, tree = _rig(tmp_path)
    (tree / "README").write_text("an edit not committed yet\n")
    before = _head(tree)
    _land(clone, "NEWS")
    problems = Git().pre_sync(tree, "main")
    assert len(problems) == 1 and "git pull --rebase origin main failed" in problems[0]
    assert _head(tree) == before and not (tree / "NEWS").exists()
    assert (tree / "README").read_text() == "an edit not committed yet\n"


def test_a_failed_fetch_skips_the_pull(tmp_path: Path) -> None:
    clone, tree = _rig(tmp_path)
    _land(clone, "NEWS")
    git(tree, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    before = _head(tree)
    problems = Git().pre_sync(tree, "main")
    assert len(problems) == 1 and problems[0].startswith("git fetch origin failed")
    assert _head(tree) == before
