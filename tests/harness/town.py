"""Build a small but complete Gas Town on disk for tests and the demo."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

STANDINS = Path(__file__).resolve().parent.parent / "standins"
AGENT = STANDINS / "agent"


def make_town(root: Path, *, rigs: dict[str, str] | None = None, name: str = "testtown",
              dialect: str = "J") -> Path:
    """Create a town at ``root`` with ``rigs`` (name -> bead prefix); return ``root``.

    ``dialect="L"`` builds it the way an [L] (mid-2026) ``gt`` leaves it, see
    :func:`make_l_town`; the default ``"J"`` is the January-2026 town."""
    if dialect not in ("J", "L"):
        raise ValueError(f"dialect must be 'J' or 'L', not {dialect!r}")
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
    if dialect == "L":
        _l_layout(root, rigs)
    return root


def make_l_town(root: Path, *, rigs: dict[str, str] | None = None, name: str = "testtown"
                ) -> Path:
    """An [L] town (gastown-2026.md), as an [L] ``gt install``/``gt up`` and one daemon
    start leave it: the stand-ins' ``gt.dialect`` knob ``L`` (so ``gt`` speaks [L] and
    ``bd`` is 1.0.5), the §0.2 markers (``rigs.json`` byte copy, ``.events.jsonl.lock``,
    ``.runtime/{heartbeats,pids,nudge_queue,nudge_poller,locks}/``, ``events/``,
    ``deacon/.deacon-heartbeat``, ``mayor/daemon.json`` with the L patrols of §6.9,
    ``CLAUDE.md``/``AGENTS.md``), witness and refinery agent beads in the town DB as
    ``task`` + ``gt:agent`` (§4.1), and each rig's identity bead ``<p>-rig-<rig>`` in its
    rig DB (without it an [L] daemon deems the rig not operational, §2)."""
    return make_town(root, rigs=rigs, name=name, dialect="L")


# mayor/daemon.json as EnsureLifecycleConfigFile writes it (gastown-2026.md §6.9): the
# dogs it adds, all enabled, with their *Str durations.
L_PATROLS = {
    "deacon": {"enabled": True, "interval": "5m", "agent": "deacon"},
    "witness": {"enabled": True},
    "refinery": {"enabled": True},
    "handler": {"enabled": True, "interval": "5m", "agent": "", "rigs": []},
    "wisp_reaper": {"enabled": True, "interval": "30m", "max_age": "24h",
                    "delete_age": "168h"},
    "compactor_dog": {"enabled": True, "interval": "24h"},
    "checkpoint_dog": {"enabled": True, "interval": "10m"},
    "doctor_dog": {"enabled": True, "interval": "5m"},
    "jsonl_git_backup": {"enabled": True, "interval": "15m"},
    "dolt_backup": {"enabled": True, "interval": "15m"},
    "scheduled_maintenance": {"enabled": True, "window": "03:00", "interval": "daily"},
    "main_branch_test": {"enabled": True, "interval": "30m", "timeout": "10m"},
}
L_CREATED = "2026-07-23T10:00:00Z"


def l_agent_id(prefix: str, rig: str, role: str) -> str:
    """[L] rig-agent IDs: ``<p>-<rig>-<role>``, or ``<p>-<role>`` when prefix == rig
    (gastown-2026.md §4.1)."""
    return f"{prefix}-{role}" if prefix == rig else f"{prefix}-{rig}-{role}"


def _l_layout(root: Path, rigs: dict[str, str]) -> None:
    (root / ".standin").mkdir(exist_ok=True)
    (root / ".standin" / "gt.dialect").write_text("L\n", encoding="utf-8")
    (root / "rigs.json").write_bytes((root / "mayor" / "rigs.json").read_bytes())
    (root / ".events.jsonl.lock").touch()
    for sub in ("heartbeats", "pids", "nudge_queue", "nudge_poller", "locks"):
        (root / ".runtime" / sub).mkdir(parents=True, exist_ok=True)
    (root / "events").mkdir(exist_ok=True)
    (root / "deacon" / ".deacon-heartbeat").touch()
    for doc in ("CLAUDE.md", "AGENTS.md"):
        (root / doc).write_text("# Gas Town\n\nThis directory is a Gas Town (HQ).\n",
                                encoding="utf-8")
    _write(root / "mayor" / "daemon.json", {
        "type": "daemon-patrol-config", "version": 1,
        "heartbeat": {"enabled": True, "interval": "3m"}, "patrols": L_PATROLS})
    town_beads = []
    for rig, prefix in rigs.items():
        for role in ("witness", "refinery"):
            town_beads.append(_bead(
                l_agent_id(prefix, rig, role), f"{role.capitalize()} for {rig}", "task",
                ["gt:agent"], f"{role.capitalize()} for {rig}\n\nrole_type: {role}\n"
                f"rig: {rig}\nagent_state: idle\nhook_bead: null"))
        _append_beads(root / rig / "mayor" / "rig" / ".beads",
                      [_bead(f"{prefix}-rig-{rig}", rig, "rig", ["gt:rig"],
                             f"Rig identity bead for {rig}.\n\nrepo: file:///srv/{rig}.git\n"
                             f"prefix: {prefix}\nstate: active")])
    _append_beads(root / ".beads", town_beads)


def _bead(iid: str, title: str, typ: str, labels: list[str], description: str) -> dict:
    return {"id": iid, "title": title, "description": description, "status": "open",
            "priority": 2, "issue_type": typ, "created_at": L_CREATED, "created_by": "mayor",
            "updated_at": L_CREATED, "labels": sorted(labels)}


def _append_beads(db: Path, beads: list[dict]) -> None:
    with (db / "issues.jsonl").open("a", encoding="utf-8") as f:
        for b in beads:
            f.write(json.dumps(b, separators=(",", ":")) + "\n")


def is_l_town(town: Path) -> bool:
    try:
        return (town / ".standin" / "gt.dialect").read_text(encoding="utf-8").strip() == "L"
    except OSError:
        return False


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
    """Work hooked to polecat ``name`` the way Gas Town hooks it; returns the issue ID.

    [J]: the issue and the agent bead in the rig's database (beads.md §7.6), the hook slot
    set. [L] (gastown-2026.md §4.1, §4.4): the issue ``hooked`` and assigned to
    ``<rig>/polecats/<n>`` in the rig's database, the agent bead in the town database as
    ``task`` + ``gt:agent`` with ``hook_bead`` only in its description (no slot, bd 1.0)."""
    issue = json.loads(bd(town, "create", f"--title=work for {name}", "--type=task",
                          "--json", rig=rig))["id"]
    if is_l_town(town):
        bd(town, "update", issue, "--status=hooked", f"--assignee={rig}/polecats/{name}",
           rig=rig)
        bd(town, "create", "--json", f"--id={l_agent_id(prefix, rig, 'polecat')}-{name}",
           f"--title=Polecat {name}", "--type=task", "--labels=gt:agent", "--force",
           f"--description=Polecat {name}\n\nrole_type: polecat\nrig: {rig}\n"
           f"agent_state: {state}\nhook_bead: {issue}")
        return issue
    bead = f"{prefix}-{rig}-polecat-{name}"
    bd(town, "create", "--json", f"--id={bead}", f"--title=Polecat {name}", "--type=agent",
       "--labels=gt:agent", "--force",
       f"--description=Polecat {name}\n\nrole_type: polecat\nrig: {rig}\n"
       f"agent_state: {state}\nhook_bead: {issue}", rig=rig)
    bd(town, "slot", "set", bead, "hook", issue, rig=rig)
    return issue
