"""No value from data becomes an option (issue 9, items 1 and 4; design rule 10).

Each port runs a fake binary that records its argv: a hostile value is either refused with
BadInput before anything runs (the record stays empty) or follows ``--``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gastown_units.errors import BadInput, GastownError, ToolError
from gastown_units.ports import argv as argv_rules
from gastown_units.ports import runner
from gastown_units.ports.beads import Beads
from gastown_units.ports.git import Git, fetched_tip, git_dir
from gastown_units.ports.mail import Mail
from gastown_units.ports.sling import Sling
from gastown_units.ports.tmux import Tmux
from gastown_units.runtime.contain import report
from gastown_units.town.names import check_name, valid_name
from tests.harness.poll import poll_until
from tests.harness.tmux_server import PrivateTmux

# Values an attacker can put in config.json, rigs.json, routes.jsonl, a bead or a mail.
HOSTILE = [
    "--upload-pack=touch /tmp/x", "-x", "--db=/tmp/evil", "a\nb", "main\n", "x" * 300,
    "a\x00b", "a\udcffb", "", " ", "-",
]


class Fake:
    """A binary that appends its argv (as JSON) to a file and prints ``stdout``."""

    def __init__(self, tmp_path: Path, stdout: bytes = b"") -> None:
        self.log = tmp_path / "argv.jsonl"
        self.path = tmp_path / "fake-tool"
        self.path.write_text(
            f"#!{sys.executable}\n"
            "import json, sys\n"
            f"with open({str(self.log)!r}, 'a') as f:\n"
            "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
            f"sys.stdout.buffer.write({stdout!r})\n")
        self.path.chmod(0o755)

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    return Fake(tmp_path)


def refused(fake: Fake, call: Callable[[], object]) -> str:
    """``call`` raises BadInput and no program ran; returns the error line."""
    with pytest.raises(BadInput) as info:
        call()
    assert fake.calls() == []
    text = str(info.value)
    assert "\n" not in text and len(text) < 400
    return text


def test_bad_input_is_contained_like_a_tool_failure(caplog: pytest.LogCaptureFixture) -> None:
    """A service's pass catches ToolError ("unknown: do not judge") and contains
    GastownError as one line without a traceback."""
    assert issubclass(BadInput, ToolError) and issubclass(BadInput, GastownError)
    assert issubclass(BadInput, ValueError)  # readers that skip unreadable names still do
    with caplog.at_level(logging.ERROR):
        line = report("pre-sync", BadInput("invalid branch '-x'"))
    assert line == "pre-sync failed: invalid branch '-x'"
    assert all(r.exc_info is None for r in caplog.records)


# --- runner ------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["a\x00b", "\udcff", "x\ud800"])
def test_runner_refuses_nul_and_lone_surrogates(fake: Fake, bad: str) -> None:
    text = refused(fake, lambda: runner.run([str(fake.path), "ok", bad], timeout=10))
    assert "argument 2" in text
    refused(fake, lambda: runner.run([str(fake.path)], timeout=10, env={"GT_X": bad}))
    refused(fake, lambda: runner.Background([str(fake.path), bad], timeout=10))


def test_runner_decodes_invalid_utf8_with_replacement(tmp_path: Path) -> None:
    fake = Fake(tmp_path, stdout=b"ok \xff\xfe \xed\xa0\x80 end\n")
    result = runner.run([str(fake.path)], timeout=10)
    assert result.ok and result.stdout.startswith("ok \ufffd") and "end" in result.stdout
    background = runner.Background([str(fake.path)], timeout=10)
    done = poll_until(background.poll, timeout=10, what="background fake")
    assert done.stdout == result.stdout


# --- names ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["-x", "--db", "a\n", "a\nb", "x" * 65, "", "a b", "é",
                                  "a/b", "a.b", "a\x00"])
def test_names_are_fully_matched(name: str) -> None:
    assert not valid_name(name)
    with pytest.raises(BadInput, match="invalid rig name"):
        check_name("rig", name)


def test_good_names_and_long_sessions() -> None:
    assert all(valid_name(n) for n in ("gastown", "Toast", "my_rig", "x" * 64, "rig-2", "_a"))
    session = f"gt-{'r' * 64}-polecat-{'p' * 64}"
    assert check_name("session", session) == session  # built from two names of 64
    with pytest.raises(BadInput):
        check_name("polecat", "p" * 65)


# --- git -----------------------------------------------------------------------------------
GIT_BAD_REFS = ["--upload-pack=touch /tmp/x", "-x", "a..b", "a b", "a~1", "a^", "a:b",
                "a?", "a*", "a[b", "a\\b", "a/", "/a", "a.", "a.lock", "a/.b", "a/x.lock/c",
                "@", "HEAD", "a@{1}", "a//b", "a\nb", "a\x7fb", "\x01", "", "a\x00",
                "a\udcff", "x" * 256, "é" * 128]


@pytest.mark.parametrize("branch", GIT_BAD_REFS)
def test_git_pre_sync_never_passes_a_bad_branch(fake: Fake, branch: str) -> None:
    problems = Git(binary=str(fake.path)).pre_sync(fake.path.parent, branch)
    assert len(problems) == 1 and "default_branch" in problems[0]
    assert fake.calls() == []  # not even the fetch: nothing runs on a bad config


def test_git_pre_sync_good_branch_argv(fake: Fake) -> None:
    assert Git(binary=str(fake.path)).pre_sync(fake.path.parent, "release/v1.2") == []
    tree = str(fake.path.parent)
    no_gc = ["-c", "maintenance.auto=false", "-c", "gc.auto=0"]
    assert fake.calls() == [["-C", tree, *no_gc, "fetch", "origin"],
                            ["-C", tree, *no_gc, "pull", "--rebase", "origin", "release/v1.2"]]


@pytest.mark.parametrize("branch", ["-x", "--upload-pack=x", "a\nb", "polecat/" + "x" * 300])
def test_git_branch_ports_refuse_bad_branches(fake: Fake, branch: str) -> None:
    git = Git(binary=str(fake.path))
    refused(fake, lambda: git.branch_exists(fake.path.parent, branch))
    refused(fake, lambda: git.delete_merged_branch(fake.path.parent, branch))


def test_git_names_and_paths_follow_double_dash(fake: Fake) -> None:
    git = Git(binary=str(fake.path))
    repo = fake.path.parent
    assert git.delete_merged_branch(repo, "polecat/Toast") is None
    git.remove_worktree(repo, Path("-rf"))
    calls = fake.calls()
    assert calls[0][-3:] == ["-d", "--", "polecat/Toast"]
    assert calls[1][-2:] == ["--", "-rf"]


def _git_accepts(name: str, cwd: Path) -> bool:
    return subprocess.run(["git", "check-ref-format", "--branch", name], cwd=cwd,
                          capture_output=True, check=False).returncode == 0


def test_ref_rules_agree_with_git(tmp_path: Path) -> None:
    """What we accept, git accepts; git's own rejections are ours too."""
    good = ["main", "master", "release/v1.2", "polecat/Toast", "feature/a-b_c", "ü", "a.b",
            "foo.lock.x", "a-"]
    for name in good:
        assert argv_rules.ref_problem(name) is None, name
        assert _git_accepts(name, tmp_path), name
    for name in GIT_BAD_REFS:
        assert argv_rules.ref_problem(name) is not None, name
        if "\x00" not in name and "\udcff" not in name and name not in ("@",) \
                and len(name.encode()) <= 255:
            assert not _git_accepts(name, tmp_path), name


@given(st.text(alphabet="ab./-@{}:~^ \n\t*?[\\", max_size=12))
def test_ref_rules_never_accept_what_git_rejects(name: str) -> None:
    if argv_rules.ref_problem(name) is None:
        assert _git_accepts(name, Path("/"))
        assert not name.startswith("-")


# --- beads ---------------------------------------------------------------------------------
BAD_IDS = ["--db=/tmp/evil", "-x", "--db=/tmp/evil-rig-gastown", "gt-a\nb", "gt-abc\n",
           "gt", "gt-", "-gt-abc", "gt-a b", "gt-a=b", "gt-a/b", "gt-" + "a" * 300,
           "gt-a\x00", "gt-a\udcff", ""]


@pytest.mark.parametrize("bead_id", BAD_IDS)
def test_bd_never_gets_a_bad_bead_id(fake: Fake, bead_id: str) -> None:
    beads = Beads(binary=str(fake.path), cwd=fake.path.parent, timeout=10)
    refused(fake, lambda: beads.show(bead_id))
    refused(fake, lambda: beads.show_many(["gt-abc", bead_id]))
    refused(fake, lambda: beads.agent(bead_id))


def test_bd_good_ids_reach_show(fake: Fake) -> None:
    beads = Beads(binary=str(fake.path), cwd=fake.path.parent, timeout=10)
    ids = ["bd-a3f8e9.1", "gt-gastown-polecat-Toast", "hq-cv-x1", "hq-deacon", "gt-rig-gastown"]
    assert beads.show_many(ids) == {}
    assert fake.calls() == [["show", *sorted(ids), "--json"]]


@pytest.mark.parametrize("prefix", ["--db=/tmp/evil", "-gt", "gt\n", "g t", "gt=", "a" * 33,
                                    "gt-", ""])
def test_bad_prefixes(prefix: str) -> None:
    with pytest.raises(BadInput, match="bead prefix"):
        argv_rules.checked_prefix(prefix)


def test_good_prefixes() -> None:
    assert [argv_rules.checked_prefix(p) for p in ("gt", "hq-cv", "web_app", "b2")] == [
        "gt", "hq-cv", "web_app", "b2"]


# --- gt mail and sling ---------------------------------------------------------------------
def test_mail_refuses_bad_addresses_and_ids(fake: Fake) -> None:
    mail = Mail(binary=str(fake.path), cwd=fake.path.parent, timeout=10)
    for bad in ["-x", "--identity=mayor/", "a\nb", "mayor/\n", "x" * 300, "a\x00", ""]:
        refused(fake, lambda bad=bad: mail.inbox(bad))
        refused(fake, lambda bad=bad: mail.send(bad, "subject", "body"))
        refused(fake, lambda bad=bad: mail.delete(bad))
    refused(fake, lambda: mail.send("mayor/", "a\x00", "body"))
    refused(fake, lambda: mail.send("mayor/", "subject", "\udcff"))


def test_mail_text_starting_with_dash_is_a_value(fake: Fake) -> None:
    """``-s``/``-m`` take the next word whatever it is: a subject ``-x`` is a subject."""
    mail = Mail(binary=str(fake.path), cwd=fake.path.parent, timeout=10)
    mail.send("gastown/witness", "-x", "--db=/tmp/evil")
    mail.delete("hq-abc12")
    assert fake.calls() == [["mail", "send", "gastown/witness", "-s", "-x", "-m", "--db=/tmp/evil"],
                            ["mail", "delete", "hq-abc12"]]


@pytest.mark.parametrize(("bead", "rig"), [("--upload-pack=x", "gastown"), ("-x", "gastown"),
                                           ("gt-abc", "-x"), ("gt-abc", "a\nb"),
                                           ("gt-abc", "r" * 65), ("gt-abc", "gastown\n")])
def test_sling_refuses_bad_beads_and_rigs(fake: Fake, bead: str, rig: str) -> None:
    sling = Sling(binary=str(fake.path), cwd=fake.path.parent, timeout=10)
    refused(fake, lambda: sling.start(bead, rig, timeout=10))


# --- tmux ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["-x", "--db", "a\nb", "x" * 201, "=x", "a:b", "a\x00"])
def test_tmux_refuses_bad_session_names(fake: Fake, name: str) -> None:
    tmux = Tmux(binary=str(fake.path), socket="s")
    for call in (lambda: tmux.send_literal(name, "hi"), lambda: tmux.send_key(name, "Enter"),
                 lambda: tmux.capture(name), lambda: tmux.display(name, "#{pane_pid}"),
                 lambda: tmux.set_environment(name, {"K": "V"}),
                 lambda: tmux.set_options(name, {"status": "off"}),
                 lambda: tmux.resize_pane(name, "-1"), lambda: tmux.kill_session(name),
                 lambda: tmux.new_session(name, cwd=Path("/"), command="sh")):
        refused(fake, call)


def test_tmux_data_follows_double_dash(fake: Fake) -> None:
    tmux = Tmux(binary=str(fake.path), socket="s")
    tmux.send_literal("hq-deacon", "-t =other: -l")
    tmux.send_key("hq-deacon", "Enter")
    tmux.set_environment("hq-deacon", {"-K": "-V"})
    tmux.set_options("hq-deacon", {"status-left": "-x"})
    tmux.set_hook("hq-deacon", "pane-died", "-x")
    tmux.set_global_hook("session-closed", "-x")
    tmux.new_session("hq-deacon", cwd=Path("/tmp"), command="-x")
    tmux.display("hq-deacon", "-#{pane_pid}")
    for call in fake.calls():
        assert call[:4] == ["-N", "-u", "-L", "s"]
        assert "--" in call, call
    tails = [call[call.index("--") + 1:] for call in fake.calls()]
    assert tails == [["-t =other: -l"], ["Enter"], ["-K", "-V"], ["status-left", "-x"],
                     ["pane-died", "-x"], ["session-closed", "-x"], ["-x"],
                     ["-#{pane_pid}"]]
    with pytest.raises(BadInput):
        tmux.resize_pane("hq-deacon", "-t")
    with pytest.raises(BadInput):
        tmux.send_literal("hq-deacon", "a\x00")
    assert len(fake.calls()) == len(tails)  # neither refusal ran tmux


def test_tmux_types_a_dash_text_literally(tmux_server: PrivateTmux, tmp_path: Path) -> None:
    """On a real tmux 3.3a, ``send-keys -l -- TEXT`` types TEXT even when it looks like
    options (without ``--`` tmux would parse ``-t``)."""
    out = tmp_path / "typed"
    tmux_server.tmux("new-session", "-d", "-s", "inj", "-c", str(tmp_path),
                     f"stty -echo; cat > {out}")
    tmux = Tmux(socket=tmux_server.socket)
    tmux.send_literal("inj", "-t =nope: -X cancel")
    tmux.send_key("inj", "Enter")
    poll_until(lambda: out.exists() and out.read_text() == "-t =nope: -X cancel\n",
               timeout=10, what="the typed text")


def test_tmux_sequence_is_one_call_with_data_after_double_dash(fake: Fake) -> None:
    tmux = Tmux(binary=str(fake.path), socket="s")
    tmux.set_environment("hq-deacon", {"A": "-V", "B": "x;"})
    (call,) = fake.calls()
    assert call[4:] == ["set-environment", "-t", "=hq-deacon", "--", "A", "-V", ";",
                        "set-environment", "-t", "=hq-deacon", "--", "B", "x\\;"]


def test_tmux_sequence_keeps_semicolons_as_data(tmux_server: PrivateTmux, tmp_path: Path
                                                ) -> None:
    """On a real tmux, a value ending in ``;`` (which tmux reads as a command's end) or
    naming a command arrives as itself, and nothing of it runs."""
    tmux_server.tmux("new-session", "-d", "-s", "seq", "-c", str(tmp_path), "sleep 600")
    tmux = Tmux(socket=tmux_server.socket)
    values = {"A": "a;", "B": "b\\;", "C": ";", "D": "kill-server", "E": "x;y", "F": "\\"}
    tmux.set_environment("seq", values)
    assert {k: tmux.show_environment("seq", k) for k in values} == values
    tmux.sequence([["set-option", "-t", "=seq:", "--", "status-left", "kill-server ;"]])
    shown = tmux_server.tmux("show-option", "-v", "-t", "=seq:", "status-left").stdout
    assert shown == "kill-server ;\n"
    assert "seq" in tmux_server.sessions()


def _fetch_head(tree: Path, text: str) -> None:
    (tree / ".git").mkdir(exist_ok=True)
    (tree / ".git" / "FETCH_HEAD").write_text(text)


def test_fetched_tip_reads_the_branch_line_of_this_fetch(tmp_path: Path) -> None:
    a, b = "a" * 40, "b" * 40
    _fetch_head(tmp_path, f"{a}\tnot-for-merge\tbranch 'dev' of /o\n{b}\t\tbranch 'main' of /o\n")
    assert fetched_tip(tmp_path, "main", since=0) == b
    assert fetched_tip(tmp_path, "dev", since=0) == a
    assert fetched_tip(tmp_path, "mai", since=0) is None  # a whole name, not a prefix
    assert fetched_tip(tmp_path, "main", since=time.time() + 60) is None  # an older fetch's
    _fetch_head(tmp_path, "--upload-pack=x\t\tbranch 'main' of /o\n")
    assert fetched_tip(tmp_path, "main", since=0) is None  # only an object id is passed on


def test_fetched_tip_follows_a_linked_worktree(tmp_path: Path) -> None:
    admin = tmp_path / "repo.git" / "worktrees" / "nux"
    admin.mkdir(parents=True)
    (admin / "FETCH_HEAD").write_text("c" * 64 + "\t\tbranch 'main' of /o\n")
    tree = tmp_path / "nux"
    tree.mkdir()
    (tree / ".git").write_text(f"gitdir: {admin}\n")
    assert git_dir(tree) == admin and fetched_tip(tree, "main", since=0) == "c" * 64
    (tree / ".git").write_text("not a pointer\n")
    assert git_dir(tree) is None and fetched_tip(tree, "main", since=0) is None
