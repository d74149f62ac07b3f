"""The ports with generated tool output: a tiny fake binary prints the generated stdout and
stderr bytes and exits with the generated status, so ``runner.run``'s decoding is exercised
as well as each port's parsing. Every port's contract: ToolError (GastownError) or a value.
"""

from __future__ import annotations

import os
from typing import Any

from bench.fuzz import seeds as S
from bench.fuzz.gen import Gen
from bench.fuzz.targets import PORT, Workspace, _panes, target

STDERRS = (
    "", "Error: no issue found matching \"gt-x\"\n", "Error: database is locked\n",
    "no server running on /tmp/tmux-0/fuzz\n", "can't find session: =hq-deacon\n",
    "error connecting to /tmp/tmux-0/x (No such file or directory)\n",
    "no current target\n", "error: the branch 'polecat/nux' is not fully merged.\n",
    "fatal: not a git repository\n", "Traceback (most recent call last):\n  boom\n",
)


def _rc(g: Gen) -> int:
    return g.pick((0, 0, 0, 1, 1, 2, 127, 255, -9, -15))


def _stderr(g: Gen) -> bytes:
    if g.chance(0.95):  # raw bytes (invalid UTF-8) rarely: they would hide other bugs
        text = g.pick(STDERRS)
        return (g.mutate_text(text) if g.chance(0.3) else text).encode("utf-8", "surrogatepass")
    return g.raw_bytes(100)


def _out(g: Gen, seeds: tuple[Any, ...]) -> bytes:
    if g.chance(0.07):
        return g.raw_bytes()
    return g.json_text(seeds).encode("utf-8", "surrogatepass")


def fake_tool(ws: Workspace, inp: dict[str, Any]) -> str:
    """Write the fake binary for this input; returns its path."""
    base = ws.root / "bin"
    base.mkdir(exist_ok=True)
    tool = base / "tool"
    (base / "tool.out").write_bytes(inp["out"])
    (base / "tool.err").write_bytes(inp["err"])
    rc = inp["rc"]
    end = f"kill -{-rc} $$" if rc < 0 else f"exit {rc}"
    tool.write_text(f'#!/bin/sh\ncat "$0.out"\ncat "$0.err" >&2\n{end}\n', encoding="utf-8")
    os.chmod(tool, 0o755)
    return str(tool)


def _bd_input(g: Gen) -> dict[str, Any]:
    return {"method": g.pick(("show", "show_many", "agent", "list_agents", "ready", "at")),
            "out": _out(g, S.BD_OUTPUTS), "err": _stderr(g), "rc": _rc(g)}


@target("ports.beads.Beads (fake bd)", PORT, _bd_input, (),
        "issues, None for 'absent', ToolError for 'unknown' (beads.md §2.4)")
def _beads(inp: Any, ws: Workspace) -> None:
    from gastown_units.ports.beads import Beads
    bd = Beads(binary=fake_tool(ws, inp), cwd=ws.town.root, timeout=10)
    method = inp["method"]
    if method == "show":
        bd.show("gt-a1b2c")
    elif method == "show_many":
        bd.show_many(["gt-a1b2c", "gt-b2"])
    elif method == "agent":
        bd.agent("gt-gastown-polecat-nux")
    elif method == "list_agents":
        bd.list_agents()
    elif method == "ready":
        bd.ready()
    else:
        bd.at(ws.town.root / ".beads").list_agents()


@target("ports.mail.Mail (fake gt)", PORT,
        lambda g: {"method": g.pick(("inbox", "inbox", "delete", "send")),
                   "out": _out(g, S.INBOXES), "err": _stderr(g), "rc": _rc(g)}, (),
        "the inbox's messages, ToolError when gt fails or its output is unreadable")
def _mail(inp: Any, ws: Workspace) -> None:
    from gastown_units.ports.mail import Mail
    mail = Mail(binary=fake_tool(ws, inp), cwd=ws.town.root, timeout=10)
    if inp["method"] == "inbox":
        mail.inbox("deacon/")
    elif inp["method"] == "delete":
        mail.delete("hq-abc12")
    else:
        mail.send("gastown/witness", "subject", "body")


@target("ports.tmux.Tmux (fake tmux)", PORT,
        lambda g: {"method": g.pick(("snapshot", "snapshot", "has_session", "version",
                                     "kill_session", "capture", "display")),
                   "out": _panes(g).encode("utf-8", "surrogatepass") if g.chance(0.85)
                   else g.raw_bytes(), "err": _stderr(g), "rc": _rc(g)}, (),
        "a Snapshot / bool / text; ServerDown or ToolError when tmux fails")
def _tmux(inp: Any, ws: Workspace) -> None:
    from gastown_units.ports.tmux import Tmux
    tmux = Tmux(binary=fake_tool(ws, inp), socket="fuzz", timeout=10)
    method = inp["method"]
    if method == "snapshot":
        tmux.snapshot()
    elif method == "has_session":
        tmux.has_session("hq-deacon")
    elif method == "version":
        tmux.version()
    elif method == "kill_session":
        tmux.kill_session("hq-deacon")
    elif method == "capture":
        tmux.capture("hq-deacon")
    else:
        tmux.display("hq-deacon", "#{pane_pid}")


@target("ports.git.Git (fake git)", PORT,
        lambda g: {"method": g.pick(("dirty_reason", "common_dir", "branch_exists",
                                     "delete_merged_branch", "pre_sync")),
                   "out": (g.text(200) if g.chance(0.8) else g.raw_bytes().decode(
                       "latin-1")).encode("utf-8", "surrogatepass"),
                   "err": _stderr(g), "rc": _rc(g)}, (),
        "status/paths/bools; ToolError when git fails (pre_sync never raises)")
def _git(inp: Any, ws: Workspace) -> None:
    from gastown_units.ports.git import Git
    git = Git(binary=fake_tool(ws, inp), timeout=10)
    tree = ws.town.root
    method = inp["method"]
    if method == "dirty_reason":
        git.dirty_reason(tree)
    elif method == "common_dir":
        git.common_dir(tree)
    elif method == "branch_exists":
        git.branch_exists(tree, "polecat/nux")
    elif method == "delete_merged_branch":
        git.delete_merged_branch(tree, "polecat/nux")
    else:
        git.pre_sync(tree, "main")


@target("runtime.tmux_host.running_server (fake tmux)", PORT,
        lambda g: {"out": g.pick(("4242\n", "0\n", "", "²\n", "x\n", g.text())).encode(
            "utf-8", "surrogatepass") if g.chance(0.85) else g.raw_bytes(),
            "err": _stderr(g), "rc": _rc(g)}, (),
        "the PID of the server on the socket, None when none runs, ToolError otherwise")
def _running_server(inp: Any, ws: Workspace) -> None:
    from gastown_units.runtime.tmux_host import running_server
    running_server(fake_tool(ws, inp), "fuzz", 10)


@target("ports.runner.Background (fake gt sling)", PORT,
        lambda g: {"out": _out(g, ()), "err": _stderr(g), "rc": _rc(g)}, (),
        "poll() gives the Result once the program ended (output decoded with 'replace')")
def _background(inp: Any, ws: Workspace) -> None:
    import time

    from gastown_units.ports import runner
    job = runner.Background([fake_tool(ws, inp), "sling", "gt-a1b2c", "gastown"], timeout=10)
    while (result := job.poll()) is None:
        time.sleep(0.002)
    result.error_line()
