"""Build a small but complete Gas Town on disk for tests and the demo."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

STANDINS = Path(__file__).resolve().parent.parent / "standins"
AGENT = STANDINS / "agent"


def make_town(root: Path, *, rigs: dict[str, str] | None = None, name: str = "testtown"
              ) -> Path:
    """Create a town at ``root`` with ``rigs`` (name -> bead prefix); return ``root``."""
    rigs = rigs if rigs is not None else {"gastown": "gt"}
    (root / "mayor").mkdir(parents=True, exist_ok=True)
    _write(root / "mayor" / "town.json", {
        "type": "town", "version": 2, "name": name, "owner": "test@example.com",
        "created_at": "2026-01-25T18:00:00Z"})
    _write(root / "mayor" / "rigs.json", {"version": 1, "rigs": {
        rig: {"git_url": f"file:///srv/{rig}.git", "added_at": "2026-01-25T18:00:00Z",
              "beads": {"repo": "", "prefix": prefix}}
        for rig, prefix in rigs.items()}})
    (root / ".beads").mkdir(exist_ok=True)
    routes = [{"prefix": "hq-", "path": "."}]
    routes += [{"prefix": f"{p}-", "path": f"{rig}/mayor/rig"} for rig, p in rigs.items()]
    (root / ".beads" / "routes.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in routes), encoding="utf-8")
    (root / ".beads" / "issues.jsonl").touch()
    for sub in ("deacon", "daemon", "logs", "settings"):
        (root / sub).mkdir(exist_ok=True)
    (root / ".beads" / "config.yaml").write_text('issue-prefix: "hq"\n', encoding="utf-8")
    for rig, prefix in rigs.items():
        for sub in ("witness", "refinery/rig", "mayor/rig", "polecats", "crew"):
            (root / rig / sub).mkdir(parents=True, exist_ok=True)
        make_rig_db(root / rig, prefix)
    return root


def make_rig_db(rig_dir: Path, prefix: str) -> Path:
    """The rig's own beads database, where Gas Town keeps it (gastown.md §1.4, beads.md
    §7.6): ``mayor/rig/.beads`` (the route's target) and ``<rig>/.beads/redirect`` to it.
    Work, the rig bead and the rig's agent beads live here, not in the town database."""
    db = rig_dir / "mayor" / "rig" / ".beads"
    db.mkdir(parents=True, exist_ok=True)
    (db / "config.yaml").write_text(f'issue-prefix: "{prefix}"\n', encoding="utf-8")
    (db / "issues.jsonl").touch()
    (rig_dir / ".beads").mkdir(exist_ok=True)
    (rig_dir / ".beads" / "redirect").write_text("mayor/rig/.beads\n", encoding="utf-8")
    return db


def _write(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def agent_record(workdir: Path) -> dict | None:
    """What the stand-in agent in ``workdir`` wrote about itself, or None."""
    path = workdir / ".agent" / "record.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def control_agent(workdir: Path, command: str) -> None:
    """Tell the stand-in agent in ``workdir`` to crash, exit, hang or go stale."""
    (workdir / ".agent").mkdir(exist_ok=True)
    (workdir / ".agent" / "control").write_text(command + "\n", encoding="utf-8")


def bd(town: Path, *args: str, rig: str | None = None) -> str:
    """The stand-in ``bd`` run in the town root, or in ``<town>/<rig>`` (the rig's database
    through its ``.beads/redirect``, as an agent of that rig runs it)."""
    cwd = town / rig if rig else town
    return subprocess.run([str(STANDINS / "bd"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=30, check=True).stdout


def rig_db(town: Path, rig: str) -> Path:
    """The rig's issue store (for tests that damage it on purpose)."""
    return town / rig / "mayor" / "rig" / ".beads" / "issues.jsonl"


def hook_work(town: Path, rig: str, name: str, *, prefix: str = "gt",
              state: str = "working") -> str:
    """Work hooked to polecat ``name`` the way Gas Town hooks it: the issue and the agent
    bead in the rig's database (beads.md §7.6), the hook slot set; returns the issue ID."""
    issue = json.loads(bd(town, "create", f"--title=work for {name}", "--type=task",
                          "--json", rig=rig))["id"]
    bead = f"{prefix}-{rig}-polecat-{name}"
    bd(town, "create", "--json", f"--id={bead}", f"--title=Polecat {name}", "--type=agent",
       "--labels=gt:agent", "--force",
       f"--description=Polecat {name}\n\nrole_type: polecat\nrig: {rig}\n"
       f"agent_state: {state}\nhook_bead: {issue}", rig=rig)
    bd(town, "slot", "set", bead, "hook", issue, rig=rig)
    return issue
