"""Build a small but complete Gas Town on disk for tests and the demo."""

from __future__ import annotations

import json
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
    for rig in rigs:
        for sub in ("witness", "refinery/rig", "mayor/rig", "polecats", "crew"):
            (root / rig / sub).mkdir(parents=True, exist_ok=True)
    return root


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
