from __future__ import annotations

import json
import shlex
from datetime import datetime
from pathlib import Path

import pytest

from gastown_units.town.agents import (
    AgentProgram,
    resolve_agent,
    start_command,
    startup_prompt,
)
from gastown_units.town.identity import BOOT, DEACON, Identity, Role
from gastown_units.town.layout import Town


def test_start_command_is_exec_env_with_sorted_quoted_env() -> None:
    env = {"GT_ROLE": "deacon", "BD_ACTOR": "deacon", "GT_ROOT": "/home/u/my town"}
    prompt = 'line one\n\nit\'s "$HOME" `x`'
    cmd = start_command(env, AgentProgram("x", ("/usr/bin/agent", "--flag")), prompt)
    words = shlex.split(cmd)
    assert words[:2] == ["exec", "env"]
    assert words[2:5] == ["BD_ACTOR=deacon", "GT_ROLE=deacon", "GT_ROOT=/home/u/my town"]
    assert words[5:] == ["/usr/bin/agent", "--flag", prompt]


def test_start_command_omits_prompt_for_prompt_mode_none() -> None:
    cmd = start_command({}, AgentProgram("codex", ("codex", "--yolo"), takes_prompt=False), "hi")
    assert shlex.split(cmd) == ["exec", "env", "codex", "--yolo"]


def test_start_command_rejects_bad_env_names() -> None:
    with pytest.raises(ValueError):
        start_command({"A B": "x"}, AgentProgram("x", ("a",)), None)


def test_prompts_follow_the_beacon_format() -> None:
    now = datetime(2026, 1, 25, 18, 40)
    assert startup_prompt(DEACON, now) == (
        "[GAS TOWN] deacon <- daemon • 2026-01-25T18:40 • patrol\n\n"
        "I am Deacon. Start patrol: check gt hook, if empty create mol-deacon-patrol wisp "
        "and execute it.")
    assert startup_prompt(BOOT, now).endswith("Run `gt boot triage` now.")
    witness = startup_prompt(Identity(Role.WITNESS, "gastown"), now)
    assert witness.startswith("[GAS TOWN] gastown/witness <- deacon")
    assert "I am Witness for gastown." in witness


def test_role_environment_matches_the_contract(tmp_path: Path) -> None:
    town = Town(tmp_path)
    assert DEACON.env(town) == {"GT_ROLE": "deacon", "BD_ACTOR": "deacon",
                                "GIT_AUTHOR_NAME": "deacon", "GT_ROOT": str(tmp_path)}
    assert BOOT.env(town)["BD_ACTOR"] == "deacon-boot"
    polecat = Identity(Role.POLECAT, "gastown", "nux").env(town)
    assert polecat["BD_ACTOR"] == "gastown/polecats/nux"
    assert polecat["BEADS_AGENT_NAME"] == "gastown/nux" and polecat["BEADS_NO_DAEMON"] == "1"
    refinery = Identity(Role.REFINERY, "gastown").env(town)
    assert refinery["GT_REFINERY"] == "1" and refinery["BEADS_NO_DAEMON"] == "1"


def test_agent_resolution_order(tmp_path: Path) -> None:
    town = Town(tmp_path)
    assert resolve_agent(town, Role.DEACON, None, None).name == "claude"
    (tmp_path / "settings").mkdir()
    (tmp_path / "settings" / "config.json").write_text(json.dumps({
        "default_agent": "gemini", "role_agents": {"witness": "mine"},
        "agents": {"mine": {"command": "/opt/mine", "args": ["-q"]}}}))
    assert resolve_agent(town, Role.DEACON, None, None).argv[0] == "gemini"
    assert resolve_agent(town, Role.WITNESS, "gastown", None).argv == ("/opt/mine", "-q")
    over = resolve_agent(town, Role.WITNESS, "gastown", "python3 'my agent.py' --x")
    assert over.argv == ("python3", "my agent.py", "--x")
    with pytest.raises(ValueError):
        resolve_agent(town, Role.DEACON, None, "python3 'unclosed")


def test_liveness_by_pane_command() -> None:
    claude = resolve_agent(Town(Path("/nonexistent")), Role.DEACON, None, None)
    assert claude.is_running("node") and claude.is_running("2.1.3")
    assert not claude.is_running("bash") and not claude.is_running("python3")
    any_agent = AgentProgram("override", ("x",))
    assert any_agent.is_running("python3") and not any_agent.is_running("zsh")
    assert not any_agent.is_running("")
