"""``gastown-units setup`` on a fresh guest with the .deb installed, then the town's life:
rigs that come and go, restarts of gastown.target, a sweep whose restart fails, and the
tmux host's stop line. The tests run in file order on one guest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.guest import GuestSystemd
from tests.harness.guest_town import (
    STANDIN_DIR,
    add_polecat_with_work,
    new_town,
    tmux_panes,
)

OWNER = "dora"
RIGS = {"alpha": "al", "beta": "be"}
CONF = "/etc/gastown/gastown.conf"
OWNER_DROPIN = "/etc/systemd/system/gastown-.service.d/owner.conf"
TOWN_UNITS = ("gastown-tmux.service", "gastown-deacon-keeper.service",
              "gastown-lifecycle-mail.service", "gastown-polecat-health.path",
              "gastown-polecat-health.timer", "gastown-rigs.path", "gastown.target")
AGENTS = ("hq-deacon", "gt-alpha-witness", "gt-alpha-refinery")


def _rigs_json(town: str, rigs: dict[str, str]) -> str:
    return json.dumps({"version": 1, "rigs": {
        rig: {"git_url": f"file:///srv/{rig}.git", "added_at": "2026-01-25T18:00:00Z",
              "beads": {"repo": "", "prefix": prefix}} for rig, prefix in rigs.items()}})


def _write_rigs(guest: GuestSystemd, town: str, text: str) -> None:
    """Replace rigs.json as gt does: a new file renamed into place, by the owner."""
    tmp = f"{town}/mayor/.rigs.json.new"
    guest.write_file(tmp, text, owner=OWNER)
    guest.run(["mv", "-f", tmp, f"{town}/mayor/rigs.json"], user=OWNER)


@pytest.fixture(scope="module")
def town(guest: GuestSystemd) -> Iterator[str]:
    path = new_town(guest, OWNER, rigs=RIGS)  # both rigs on disk, only alpha registered
    _write_rigs(guest, path, _rigs_json(path, {"alpha": "al"}))
    # The owner's claude is found the way a real one is: ~/.local/bin, which Debian's
    # ~/.profile puts on the PATH of a login shell.
    guest.run(["mkdir", "-p", f"/home/{OWNER}/.local/bin"], user=OWNER)
    guest.run(["ln", "-s", f"{STANDIN_DIR}/agent", f"/home/{OWNER}/.local/bin/claude"],
              user=OWNER)
    # An operator's own setting, which setup must keep.
    guest.run(["sh", "-c", f"echo GT_INTERVAL=2 >> {CONF}"])
    guest.add_user("erin")  # a user without claude
    yield path
    guest.systemctl("stop", "gastown.target", check=False)


def _setup(guest: GuestSystemd, town: str, *args: str, user: str = OWNER):
    return guest.run(["gastown-units", "setup", "--town", town, "--user", user, *args],
                     check=False, timeout=300)


def _state(guest: GuestSystemd) -> dict[str, str]:
    """What setup may change: the files and every town unit's enabled/active state."""
    files = {p: guest.run(["cat", p], check=False).stdout for p in (CONF, OWNER_DROPIN)}
    units = {u: guest.systemctl("is-enabled", u, check=False).stdout.strip() + "/"
             + guest.systemctl("is-active", u, check=False).stdout.strip()
             for u in (*TOWN_UNITS, "gastown-rig@alpha.target")}
    return {**files, **units}


def _agent(guest: GuestSystemd, session: str) -> int | None:
    pane = tmux_panes(guest, OWNER).get(session)
    return pane[0] if pane and pane[1] == "claude" else None


def _agents(guest: GuestSystemd, sessions: tuple[str, ...] = AGENTS) -> dict[str, int]:
    return guest.wait_for(lambda: (found := {s: _agent(guest, s) for s in sessions})
                          and all(found.values()) and found, timeout=120,
                          what=f"agents {sessions} running")


def _active(guest: GuestSystemd, unit: str) -> bool:
    return guest.show(unit, "ActiveState")["ActiveState"] == "active"


def _main_pid(guest: GuestSystemd, unit: str) -> str:
    return guest.show(unit, "MainPID")["MainPID"]


def test_dry_run_prints_every_change_and_changes_nothing(guest: GuestSystemd,
                                                         town: str) -> None:
    before = _state(guest)
    result = _setup(guest, town, "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"found claude: /home/{OWNER}/.local/bin/claude" in out
    assert "found gt: /usr/local/bin/gt" in out and "found bd: /usr/local/bin/bd" in out
    assert f"would change {CONF}:" in out and f"+GT_TOWN_ROOT={town}" in out
    assert f"would create {OWNER_DROPIN}:\n" in out
    assert f"    [Service]\n    User={OWNER}\n    ReadWritePaths=-{town}\n" in out
    assert f"PathChanged={town}/mayor/rigs.json" in out
    assert "would run: systemctl daemon-reload" in out
    assert "would run: systemctl enable " in out and "gastown-rig@alpha.target" in out
    assert "gastown-rig@beta.target" not in out
    assert out.rstrip().endswith("dry run: nothing changed")
    assert _state(guest) == before


def test_the_login_path_of_an_account_without_a_login_shell(guest: GuestSystemd,
                                                            town: str) -> None:
    """runuser -l fails for a nologin account: its ~/.profile is read by sh -l instead."""
    guest.run(["useradd", "-m", "-s", "/usr/sbin/nologin", "frank"])
    guest.run(["mkdir", "-p", "/home/frank/.local/bin"], user="frank")
    guest.run(["ln", "-s", f"{STANDIN_DIR}/agent", "/home/frank/.local/bin/claude"],
              user="frank")
    before = _state(guest)
    result = _setup(guest, town, "--dry-run", user="frank")
    assert result.returncode == 0, result.stderr
    assert "found claude: /home/frank/.local/bin/claude" in result.stdout
    assert _state(guest) == before


def test_setup_refuses_a_missing_town_user_or_tool(guest: GuestSystemd, town: str) -> None:
    before = _state(guest)
    for args, user, message in (
            (("--town", "/srv/nothing"), OWNER, "town root /srv/nothing does not exist"),
            (("--town", f"/home/{OWNER}"), OWNER, "mayor/town.json is missing"),
            (("--town", town), "nosuchuser", "no such user: nosuchuser"),
            (("--town", town), "erin", "claude not found on the PATH of erin")):
        result = guest.run(["gastown-units", "setup", *args, "--user", user], check=False)
        assert result.returncode == 78, (args, user, result)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, \
            result.stderr
    assert _state(guest) == before


def test_setup_alone_brings_the_town_up(guest: GuestSystemd, town: str) -> None:
    result = _setup(guest, town)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    for unit in (*TOWN_UNITS, "gastown-rig@alpha.target"):
        assert guest.systemctl("is-enabled", unit).stdout.strip() == "enabled", unit
    guest.wait_for(lambda: _active(guest, "gastown.target"), timeout=30,
                   what="gastown.target active")
    agents = _agents(guest)
    assert set(agents) == set(AGENTS)
    for unit in ("gastown-witness@alpha.service", "gastown-refinery@alpha.service",
                 "gastown-deacon-keeper.service"):
        assert _active(guest, unit), unit
    conf = guest.read_file(CONF)
    lines = conf.splitlines()
    assert f"GT_TOWN_ROOT={town}" in lines and "GT_INTERVAL=2" in lines
    assert "#GT_BD_BIN=bd" in lines  # the commented knob list is kept
    path = next(line for line in lines if line.startswith("PATH="))
    assert set(path.removeprefix("PATH=").split(":")[:2]) == {
        f"/home/{OWNER}/.local/bin", "/usr/local/bin"}  # the tools' directories first
    assert guest.read_file(OWNER_DROPIN).endswith(
        f"[Service]\nUser={OWNER}\nReadWritePaths=-{town}\n")
    # The town is writable in the supervisors' sandbox, the rest of the file system not;
    # the tmux host (the agents' parent) has no sandbox at all.
    assert town in guest.show("gastown-witness@alpha.service",
                              "ReadWritePaths").get("ReadWritePaths", "")
    assert guest.show("gastown-witness@alpha.service", "ProtectSystem")["ProtectSystem"] \
        == "strict"
    tmux = guest.show("gastown-tmux.service", "ReadWritePaths", "ProtectSystem")
    assert not tmux.get("ReadWritePaths") and tmux.get("ProtectSystem") == "no", tmux
    assert guest.show("gastown-witness@alpha.service", "User")["User"] == OWNER
    assert guest.show("gastown-rigs.service", "User")["User"] == "root"


def test_a_second_setup_changes_nothing_and_says_so(guest: GuestSystemd, town: str) -> None:
    before = _state(guest)
    pids = {u: _main_pid(guest, u) for u in TOWN_UNITS if u.endswith(".service")}
    result = _setup(guest, town)
    assert result.returncode == 0, result.stderr
    assert "nothing to change" in result.stdout and "run:" not in result.stdout
    assert _state(guest) == before
    assert {u: _main_pid(guest, u) for u in pids} == pids


def test_rigs_follow_rigs_json(guest: GuestSystemd, town: str) -> None:
    kept = _agents(guest)
    _write_rigs(guest, town, _rigs_json(town, RIGS))
    for unit in ("gastown-witness@beta.service", "gastown-refinery@beta.service"):
        guest.wait_for(lambda unit=unit: _active(guest, unit), timeout=60,
                       what=f"{unit} started for the new rig")
    assert guest.systemctl("is-enabled", "gastown-rig@beta.target").stdout.strip() == \
        "enabled"
    beta = _agents(guest, ("gt-beta-witness", "gt-beta-refinery"))
    log = guest.journal("-u", "gastown-rigs.service", "-o", "cat")
    assert log.count("rig beta is in rigs.json: enabled and started "
                     "gastown-rig@beta.target") == 1, log

    _write_rigs(guest, town, _rigs_json(town, {"alpha": "al"}))
    for unit in ("gastown-witness@beta.service", "gastown-refinery@beta.service",
                 "gastown-rig@beta.target"):
        guest.wait_for(lambda unit=unit: guest.show(unit, "ActiveState")["ActiveState"]
                       == "inactive", timeout=60, what=f"{unit} stopped for the gone rig")
    assert guest.systemctl("is-enabled", "gastown-rig@beta.target", check=False
                           ).stdout.strip() == "disabled"
    log = guest.journal("-u", "gastown-rigs.service", "-o", "cat")
    assert log.count("rig beta is gone from rigs.json: stopped and disabled") == 1, log
    # disabling a rig unit disables its Also= units too: the town's stay enabled
    for unit in TOWN_UNITS:
        assert guest.systemctl("is-enabled", unit).stdout.strip() == "enabled", unit
    # sync-rigs touches units only: every agent, the gone rig's too, still runs
    assert {s: _agent(guest, s) for s in beta} == beta
    assert {s: _agent(guest, s) for s in kept} == kept
    assert _active(guest, "gastown-witness@alpha.service")
    guest.run(["tmux", "-N", "kill-session", "-t", "=gt-beta-witness"], user=OWNER)
    guest.run(["tmux", "-N", "kill-session", "-t", "=gt-beta-refinery"], user=OWNER)


def test_a_damaged_rigs_json_changes_nothing(guest: GuestSystemd, town: str) -> None:
    since = guest.run(["date", "+%Y-%m-%d %H:%M:%S"]).stdout.strip()
    good = guest.read_file(f"{town}/mayor/rigs.json")
    _write_rigs(guest, town, '{"rigs": {"alpha": ')
    guest.wait_for(lambda: f"{town}/mayor/rigs.json is unreadable" in guest.journal(
        "-u", "gastown-rigs.service", "--since", since, "-o", "cat"), timeout=60,
        what="the damaged-file line")
    assert guest.systemctl("is-enabled", "gastown-rig@alpha.target").stdout.strip() == \
        "enabled"
    assert _active(guest, "gastown-witness@alpha.service")
    assert guest.systemctl("is-failed", "gastown-rigs.service", check=False
                           ).stdout.strip() != "failed"
    _write_rigs(guest, town, good)


def test_restarting_gastown_target_keeps_every_rig_supervised(guest: GuestSystemd,
                                                              town: str) -> None:
    agents = _agents(guest)
    tmux = _main_pid(guest, "gastown-tmux.service")
    rig_units = ("gastown-witness@alpha.service", "gastown-refinery@alpha.service")
    for action in (("restart",), ("stop", "start")):
        before = {u: _main_pid(guest, u) for u in rig_units}
        for verb in action:
            guest.systemctl(verb, "gastown.target")
            if verb == "stop":
                for unit in (*rig_units, "gastown-rig@alpha.target"):
                    guest.wait_for(lambda unit=unit: guest.show(unit, "ActiveState")
                                   ["ActiveState"] == "inactive", timeout=60,
                                   what=f"{unit} stopped with gastown.target")
                assert _active(guest, "gastown-tmux.service")
        for unit in rig_units:
            guest.wait_for(lambda unit=unit, old=before[unit]: _active(guest, unit)
                           and _main_pid(guest, unit) not in ("0", old),
                           timeout=60, what=f"{unit} back after {' + '.join(action)}")
        assert _active(guest, "gastown.target")
        assert _main_pid(guest, "gastown-tmux.service") == tmux
        assert {s: _agent(guest, s) for s in agents} == agents


def test_a_sweep_whose_restart_fails_leaves_the_unit_not_failed(guest: GuestSystemd,
                                                                 town: str) -> None:
    unit = "gastown-polecat-health.service"
    tree = add_polecat_with_work(guest, OWNER, town, "alpha", "nux", prefix="al")
    guest.run(["git", "-C", f"{town}/alpha/.repo.git", "worktree", "remove", "--force",
               tree], user=OWNER)
    guest.run(["mkdir", "-p", f"{town}/alpha/polecats/nux"], user=OWNER)
    guest.systemctl("start", "--no-block", unit)
    shown = guest.wait_for(
        lambda: (s := guest.show(unit, "ActiveState", "Result", "ExecMainStatus"))
        and s["ExecMainStatus"] == "1" and s["ActiveState"] != "activating" and s,
        timeout=90, what="a sweep that exited 1 (a failed restart)")
    assert (shown["ActiveState"], shown["Result"]) == ("inactive", "success"), shown
    assert guest.systemctl("is-failed", unit, check=False).stdout.strip() != "failed"
    assert "worktree missing" in guest.journal("-u", unit, "-o", "cat")


def test_a_package_upgrade_keeps_the_tmux_host_and_every_agent(
        guest: GuestSystemd, town: str, deb_path: Path) -> None:
    agents = _agents(guest)
    tmux = guest.show("gastown-tmux.service", "MainPID", "NRestarts")
    guest.install_deb(deb_path, reinstall=True)  # postinst configure OLD-VERSION
    assert guest.show("gastown-tmux.service", "MainPID", "NRestarts") == tmux
    for unit in ("gastown.target", "gastown-witness@alpha.service",
                 "gastown-refinery@alpha.service", "gastown-deacon-keeper.service",
                 "gastown-rigs.path"):
        guest.wait_for(lambda unit=unit: _active(guest, unit), timeout=60,
                       what=f"{unit} active after the upgrade")
    assert {s: _agent(guest, s) for s in agents} == agents
    again = _setup(guest, town)
    assert "nothing to change" in again.stdout, again.stdout


def test_stopping_the_tmux_host_says_which_sessions_it_ends(guest: GuestSystemd,
                                                           town: str) -> None:
    _agents(guest)
    guest.systemctl("stop", "gastown.target", "gastown-tmux.service")
    log = guest.journal("-u", "gastown-tmux.service", "-o", "cat")
    line = next((ln for ln in log.splitlines() if "ending" in ln and "session(s)" in ln),
                None)
    assert line is not None, log
    for session in AGENTS:
        assert session in line, line


def test_purge_removes_what_setup_wrote(guest: GuestSystemd, town: str) -> None:
    guest.write_file("/etc/systemd/system/gastown-.service.d/mine.conf",
                     "[Service]\nNice=5\n")  # the operator's own: kept
    guest.run(["apt-get", "purge", "-y", "gastown-units"],
              env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=300)
    for path in (OWNER_DROPIN, "/etc/systemd/system/gastown-rigs.path.d", CONF,
                 "/etc/systemd/system/gastown.target.wants"):
        assert guest.run(["test", "-e", path], check=False).returncode != 0, path
    assert guest.read_file("/etc/systemd/system/gastown-.service.d/mine.conf")
    dangling = guest.run(["find", "/etc/systemd/system", "-xtype", "l", "-name", "gastown*"]
                         ).stdout
    assert dangling == "", dangling
