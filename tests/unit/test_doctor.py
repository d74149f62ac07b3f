"""``gastown-units doctor``: every check on fabricated facts (pass, fail with its fix),
and the read-only gathering steps on a test town (no systemd, no tmux)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from gastown_units import doctor_checks as dc
from gastown_units.cli import main
from gastown_units.commands import doctor as gather
from gastown_units.doctor_checks import Backoff, Check, Facts, TmuxFacts, Tool, Unit
from gastown_units.runtime.wake import hook_command

HOOKS = "".join(f"{hook}[77] {hook_command(Path(dc.EVENT_FILE), hook)}\n"
                for hook in dc.EVENT_HOOKS)
# The hooks of the version before the per-session markers: every service woke for each.
STOP18_HOOKS = ("session-closed[77] run-shell -b \": > /run/gastown-tmux/events; "
                ": > /run/gastown-tmux/events.pending\"\n"
                "pane-died[77] run-shell -b \": > /run/gastown-tmux/events; "
                ": > /run/gastown-tmux/events.pending\"\n")
OLD_HOOKS = ("session-closed[77] run-shell -b \": > /run/gastown-tmux/events\"\n"
             "pane-died[77] run-shell -b \": > /run/gastown-tmux/events\"\n")


def _units(rigs: tuple[str, ...]) -> dict[str, Unit]:
    units = {dc.TMUX_UNIT: Unit(dc.TMUX_UNIT, "loaded", "active", "running", "success",
                                "alice", "enabled")}
    for name in dc.SUPERVISORS:
        units[name] = Unit(name, "loaded", "active", "running", "success", "alice", "enabled",
                           "/tmp /var/tmp -/home/alice/gt")
    for rig in rigs:
        units[f"gastown-rig@{rig}.target"] = Unit(f"gastown-rig@{rig}.target", "loaded",
                                                  "active", "active", "success", "", "enabled")
    for name in dc.DAEMON_UNITS:
        units[name] = Unit(name, "not-found", "inactive", "dead", "", "", "not-found")
    return units


def healthy() -> Facts:
    rigs = ("alpha", "beta", "gamma")
    exposure: dict[str, float | str] = {u: 2.2 for u in dc.SUPERVISORS}
    return Facts(
        town_root=Path("/home/alice/gt"), rigs=rigs, path="/usr/local/bin:/usr/bin:/bin",
        path_source="PATH in /etc/gastown/gastown.conf",
        tools=(Tool("gt", "gt", "GT_GT_BIN", "/usr/local/bin/gt"),
               Tool("bd", "bd", "GT_BD_BIN", "/usr/local/bin/bd"),
               Tool("tmux", "tmux", "GT_TMUX_BIN", "/usr/bin/tmux"),
               Tool("runtime claude", "claude", "GT_AGENT_COMMAND", "/usr/local/bin/claude",
                    ("deacon", "boot"))),
        units=_units(rigs), town_dir_owner="alice",
        tmux=TmuxFacts("/tmp/tmux-1000/default", hooks=HOOKS,
                       sessions=frozenset({"hq-deacon", "gt-alpha-witness", "other"})),
        agents=("hq-deacon", "gt-boot", "gt-alpha-witness"), exposure=exposure,
        dialect="J", dialect_reason="no [L] marker")


def failing(facts: Facts) -> list[Check]:
    return [c for c in dc.run_checks(facts) if c.ok is False]


def only_failure(facts: Facts) -> Check:
    bad = failing(facts)
    assert len(bad) == 1, [c.lines() for c in bad]
    assert bad[0].fix, bad[0]
    return bad[0]


def test_a_healthy_town_passes_every_check() -> None:
    checks = dc.run_checks(healthy())
    assert all(c.ok for c in checks), [c.lines() for c in checks if not c.ok]
    assert dc.exit_code(checks) == 0
    lines = [c.lines()[0] for c in checks]
    assert "✓ town /home/alice/gt readable (3 rigs)" in lines
    assert "✓ bd on the units' PATH: /usr/local/bin/bd" in lines
    assert f"✓ {dc.TMUX_UNIT} runs as the owner (alice)" in lines
    assert "✓ 2 agent sessions of the town on this server, none on another server of the " \
           "owner" in lines
    assert any(line.startswith("✓ gastown-deacon-keeper.service exposure 2.2") for line in lines)


def test_town_not_set_and_unreadable() -> None:
    bad = only_failure(dataclasses.replace(healthy(), town_root=None,
                                           town_error="GT_TOWN_ROOT is not set"))
    assert bad.lines()[0] == "✗ town not readable: GT_TOWN_ROOT is not set"
    assert "GT_TOWN_ROOT" in bad.fix and dc.CONF in bad.fix
    bad = only_failure(dataclasses.replace(healthy(), rigs_error="rigs.json: empty file"))
    assert "rigs.json" in bad.detail and "mayor/rigs.json" in bad.fix


def test_a_tool_missing_from_the_units_path() -> None:
    facts = healthy()
    tools = tuple(dataclasses.replace(t, found=None) if t.label == "bd" else t
                  for t in facts.tools)
    bad = only_failure(dataclasses.replace(facts, tools=tools, path="/usr/bin:/bin"))
    assert bad.lines() == [
        "✗ bd not on the units' PATH (/usr/bin:/bin)",
        "    fix: add the directory of bd to PATH in /etc/gastown/gastown.conf (now: PATH "
        "in /etc/gastown/gastown.conf), or set GT_BD_BIN to its full path, then "
        "systemctl restart gastown.target"]


def test_a_runtime_missing_or_unresolved() -> None:
    facts = healthy()
    tools = (*facts.tools[:3], Tool("runtime agent", "/opt/agent", "GT_AGENT_COMMAND", None,
                                    ("deacon",)))
    bad = only_failure(dataclasses.replace(facts, tools=tools))
    assert "/opt/agent (for deacon) is not an executable file" in bad.detail
    assert "GT_AGENT_COMMAND" in bad.fix
    bad = only_failure(dataclasses.replace(facts, tools_error="deacon: unknown agent 'x'"))
    assert "runtime not resolved" in bad.detail and "settings/config.json" in bad.fix


def test_tmux_host_inactive_or_not_the_owner() -> None:
    facts = healthy()
    units = dict(facts.units)
    units[dc.TMUX_UNIT] = dataclasses.replace(units[dc.TMUX_UNIT], active="inactive")
    bad = only_failure(dataclasses.replace(facts, units=units))
    assert bad.detail == f"{dc.TMUX_UNIT} is inactive"
    assert f"systemctl start {dc.TMUX_UNIT}" in bad.fix
    units[dc.TMUX_UNIT] = dataclasses.replace(facts.units[dc.TMUX_UNIT], user="")
    bad = only_failure(dataclasses.replace(facts, units=units))
    assert "runs as root, not as the town's owner alice" in bad.detail
    assert "User=alice" in bad.fix and dc.OWNER_DROPIN in bad.fix


def test_tmux_server_down_and_hooks_missing() -> None:
    facts = healthy()
    bad = only_failure(dataclasses.replace(facts, tmux=TmuxFacts("/tmp/tmux-1000/default",
                                                                 down=True)))
    assert "does not answer: no server running" in bad.detail
    assert "systemctl start gastown-tmux.service" in bad.fix
    tmux = dataclasses.replace(facts.tmux or TmuxFacts(), hooks=HOOKS.splitlines()[0] + "\n")
    bad = only_failure(dataclasses.replace(facts, tmux=tmux))
    assert bad.detail == "event hooks missing: pane-died[77]"
    assert "as alice: gastown-units tmux-ready --event-file /run/gastown-tmux/events" in bad.fix
    tmux = dataclasses.replace(tmux, hooks="session-closed[0] x\npane-died\n")
    assert "session-closed[77], pane-died[77]" in only_failure(
        dataclasses.replace(facts, tmux=tmux)).detail


def test_hooks_of_an_older_version_are_named_with_the_command_that_renews_them() -> None:
    """Hooks set before the pending marker existed: a death during a sweep would wait for
    the timer (the tmux host keeps its hooks across a package upgrade)."""
    facts = healthy()
    for old in (OLD_HOOKS, STOP18_HOOKS):  # no pending marker; no per-session marker
        tmux = dataclasses.replace(facts.tmux or TmuxFacts(), hooks=old)
        bad = only_failure(dataclasses.replace(facts, tmux=tmux))
        assert bad.detail.startswith("event hooks of an older version"), old
        assert "session-closed[77], pane-died[77]" in bad.detail
        assert "gastown-units tmux-ready --event-file /run/gastown-tmux/events" in bad.fix


def test_split_town() -> None:
    facts = healthy()
    tmux = dataclasses.replace(facts.tmux or TmuxFacts(), others={
        "/tmp/tmux-1000/gastown": frozenset({"gt-boot", "unrelated"}),
        "/tmp/tmux-1000/dead": None})
    bad = only_failure(dataclasses.replace(facts, tmux=tmux))
    assert bad.detail.startswith("split town: gt-boot run on tmux server /tmp/tmux-1000/gastown")
    assert "GT_TMUX_SOCKET=gastown" in bad.fix
    tmux = dataclasses.replace(tmux, others={"/tmp/tmux-1000/dead": None})
    ok = [c for c in dc.run_checks(dataclasses.replace(facts, tmux=tmux))
          if c.name == "agents-server"][0]
    assert ok.ok and "/tmp/tmux-1000/dead did not answer" in ok.detail


def test_a_rig_not_enabled() -> None:
    facts = healthy()
    units = dict(facts.units)
    units["gastown-rig@beta.target"] = dataclasses.replace(units["gastown-rig@beta.target"],
                                                           enabled="disabled")
    bad = only_failure(dataclasses.replace(facts, units=units))
    assert bad.detail.startswith("rig beta not enabled")
    assert bad.fix == "systemctl enable --now gastown-rig@beta.target"
    for role in ("witness", "refinery"):  # both services enabled: fine without the target
        units[f"gastown-{role}@beta.service"] = Unit(f"gastown-{role}@beta.service",
                                                     enabled="enabled")
    assert not failing(dataclasses.replace(facts, units=units))


def test_gt_daemon_beside_us() -> None:
    facts = healthy()
    bad = only_failure(dataclasses.replace(facts, daemons=("PID 42: gt daemon run",)))
    assert "gt daemon runs beside the units: PID 42" in bad.detail
    assert "gt daemon stop" in bad.fix
    units = dict(facts.units)
    units["gastown-daemon.service"] = Unit("gastown-daemon.service", "loaded", "inactive",
                                           enabled="enabled")
    bad = only_failure(dataclasses.replace(facts, units=units))
    assert bad.fix == "systemctl disable --now gastown-daemon.service"


def test_failed_units_and_start_limit() -> None:
    facts = healthy()
    units = dict(facts.units)
    name = "gastown-lifecycle-mail.service"
    units[name] = dataclasses.replace(units[name], active="failed", result="exit-code")
    bad = only_failure(dataclasses.replace(facts, units=units))
    assert bad.detail == f"{name} failed (result exit-code)"
    assert f"journalctl -u {name}" in bad.fix and f"reset-failed {name}" in bad.fix
    units[name] = dataclasses.replace(units[name], result="start-limit-hit")
    assert "hit its start limit" in only_failure(dataclasses.replace(facts, units=units)).detail


def test_agents_in_backoff_or_crash_loop() -> None:
    facts = healthy()
    bad = failing(dataclasses.replace(facts, restarts=(
        Backoff("gt-alpha-nux", True, 0.0), Backoff("gt-alpha-max", False, 90.0))))
    assert [c.detail for c in bad] == ["gt-alpha-nux is in a crash loop: no more restarts"]
    assert "gastown-units clear-backoff gt-alpha-nux" in bad[0].fix
    # A backoff is normal for a while after any restart: told ("-"), not a failure.
    told = [c for c in dc.check_restarts(dataclasses.replace(facts, restarts=(
        Backoff("gt-alpha-max", False, 90.0),))) if c.ok is None]
    assert [c.detail for c in told] == [
        "gt-alpha-max restarted recently: in restart backoff for 90s more "
        "(gastown-units clear-backoff gt-alpha-max ends it)"]
    bad_state = only_failure(dataclasses.replace(facts, restarts_error="not valid JSON"))
    assert "restart state unreadable" in bad_state.detail


def test_state_files_set_aside() -> None:
    path = Path("/home/alice/gt/daemon/restart_state.json.bad")
    bad = only_failure(dataclasses.replace(healthy(), bad_files=(path,)))
    assert str(path) in bad.detail and "remove the .bad" in bad.fix


def test_unusable_restart_policy_is_named() -> None:
    """A patrols.restart_tracker setting the Deacon keeper cannot use (it falls back to Gas
    Town's default, gastown-2026.md §6.10) is a failed check with the file and the fix."""
    assert [c.ok for c in dc.check_restart_policy(healthy())] == [True]
    problem = "patrols.restart_tracker.max_backoff must be a whole number of nanoseconds, " \
        "not '10m'"
    bad = only_failure(dataclasses.replace(healthy(), restart_policy=(problem,)))
    assert bad.name == "restart-policy"
    assert "/home/alice/gt/mayor/daemon.json" in bad.detail and problem in bad.detail
    assert "nanoseconds" in bad.fix


def test_town_read_only_in_the_sandbox() -> None:
    facts = healthy()
    unit = "gastown-lifecycle-mail.service"
    units = {**facts.units, unit: dataclasses.replace(facts.units[unit], writable="/tmp")}
    bad = only_failure(dataclasses.replace(facts, units=units))
    assert bad.detail == f"town /home/alice/gt is read-only in the sandbox of {unit}"
    assert "ReadWritePaths=-/home/alice/gt" in bad.fix and dc.OWNER_DROPIN in bad.fix
    lines = [c.lines()[0] for c in dc.run_checks(facts)]
    assert "✓ town /home/alice/gt writable in the supervisors' sandbox" in lines


def test_hardening() -> None:
    facts = healthy()
    unit = "gastown-polecat-health.service"
    bad = only_failure(dataclasses.replace(facts, exposure={
        **facts.exposure, unit: dc.EXPOSURE_MAX + 0.1}))
    assert bad.detail == f"{unit} exposure 4.1 (above 4.0)"
    assert f"systemd-analyze security {unit}" in bad.fix
    skipped = dc.run_checks(dataclasses.replace(facts, analyze_missing=True, exposure={}))
    assert [c.ok for c in skipped if c.name == "hardening"] == [None]
    assert dc.exit_code(skipped) == 0
    unknown = dc.run_checks(dataclasses.replace(facts, exposure={unit: "no figure"}))
    assert dc.exit_code(unknown) == 0


def test_no_systemd_here() -> None:
    facts = dataclasses.replace(healthy(), systemd=False, units={}, exposure={})
    bad = only_failure(facts)
    assert bad.detail.startswith("systemd not running here")
    checks = dc.run_checks(facts)
    assert not [c for c in checks if c.name.startswith(("rig-", "hardening", "tmux-host"))]
    bad = only_failure(dataclasses.replace(healthy(), systemd_error="Failed to connect to bus"))
    assert "systemctl cannot be asked" in bad.detail


def test_parsers() -> None:
    assert dc.parse_exposure("→ Overall exposure level for a@b.service: 4.9 OK 🙂") == 4.9
    assert dc.is_gt_daemon(["/usr/local/bin/gt", "daemon", "run"])
    assert not dc.is_gt_daemon(["/usr/bin/python3", "-m", "gastown_units", "run"])
    units = gather.parse_show("Id=a.service\nLoadState=loaded\nActiveState=failed\n"
                              "Result=start-limit-hit\nUser=bob\n\nId=b.target\n"
                              "ActiveState=active\n")
    assert units["a.service"] == Unit("a.service", "loaded", "failed", "", "start-limit-hit",
                                      "bob")
    assert units["b.target"].active == "active"


# --- the gathering steps on a test town --------------------------------------------------

def test_units_path_comes_from_the_configuration_not_the_caller(tmp_path: Path) -> None:
    conf = tmp_path / "gastown.conf"
    conf.write_text("PATH=/opt/tools:/usr/bin\n", encoding="utf-8")
    env = {"GT_CONFIG": str(conf), "PATH": "/home/me/bin:/usr/bin"}
    assert gather.units_path(env, systemd=False) == ("/opt/tools:/usr/bin",
                                                     f"PATH in {conf}")
    conf.write_text("GT_TOWN_ROOT=/x\n", encoding="utf-8")
    assert gather.units_path(env, systemd=False)[0] == gather.SYSTEMD_DEFAULT_PATH


def test_restart_state_is_read_only(town: Path) -> None:
    state = town / "daemon" / "restart_state.json"
    state.write_text(json.dumps({"agents": {
        "gt-gastown-nux": {"restart_count": 5, "crash_loop_since": "2026-01-01T00:00:00Z",
                           "backoff_until": "2026-01-01T00:00:00Z"},
        "gt-gastown-max": {"restart_count": 1, "backoff_until": "2099-01-01T00:00:00Z"},
        "gt-gastown-old": {"restart_count": 1, "backoff_until": "2020-01-01T00:00:00Z"},
    }}), encoding="utf-8")
    from gastown_units.town.layout import Town

    found = gather.gather_restarts(Town.open(town), now=1.77e9)
    assert [(b.session, b.crash_loop) for b in found] == [("gt-gastown-max", False),
                                                          ("gt-gastown-nux", True)]
    state.write_text("{ corrupt", encoding="utf-8")
    with pytest.raises(ValueError):
        gather.gather_restarts(Town.open(town), now=1e9)
    assert state.exists() and not state.with_name(state.name + ".bad").exists()


def test_bad_files_found(town: Path) -> None:
    from gastown_units.town.layout import Town

    (town / "daemon" / "units").mkdir()
    (town / "daemon" / "units" / "witness-gastown.json.bad").write_text("x", encoding="utf-8")
    (town / "daemon" / "restart_state.json.bad").write_text("x", encoding="utf-8")
    found = gather.gather_bad_files(Town.open(town))
    assert [p.name for p in found] == ["restart_state.json.bad", "witness-gastown.json.bad"]


def test_restart_policy_read_as_the_keeper_reads_it(town: Path) -> None:
    from gastown_units.town.layout import Town

    daemon_json = town / "mayor" / "daemon.json"
    assert not daemon_json.exists()  # a [J] town: no daemon.json, Gas Town's defaults
    assert gather.gather_restart_policy(Town.open(town)) == ()
    tracker = {"initial_backoff": 30_000_000_000, "crash_loop_count": 3}
    data = {"type": "daemon-patrol-config", "version": 1,
            "patrols": {"restart_tracker": tracker}}
    daemon_json.write_text(json.dumps(data), encoding="utf-8")
    assert gather.gather_restart_policy(Town.open(town)) == ()
    tracker.update(initial_backoff="30s", backoff_multiplier=True)
    daemon_json.write_text(json.dumps(data), encoding="utf-8")
    found = gather.gather_restart_policy(Town.open(town))
    assert [p.split(" must")[0] for p in found] == [
        "patrols.restart_tracker.initial_backoff", "patrols.restart_tracker.backoff_multiplier"]
    daemon_json.write_text("{ damaged", encoding="utf-8")
    found = gather.gather_restart_policy(Town.open(town))
    assert len(found) == 1 and found[0].startswith("unreadable (")
    assert daemon_json.read_text(encoding="utf-8") == "{ damaged"  # nothing set aside


def _doctor(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
            env: dict[str, str], *args: str) -> tuple[int, str]:
    for key in ("GT_TOWN_ROOT", "GT_TMUX_SOCKET", "GT_AGENT_COMMAND", "GT_BD_BIN", "GT_GT_BIN",
                "GT_INTERVAL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("GT_CONFIG", "")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(gather, "SYSTEMD_DIR", Path("/nonexistent/systemd"))
    code = main(["doctor", *args])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out


def test_cli_exit_codes(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                        tmp_path: Path, town: Path) -> None:
    code, out = _doctor(capsys, monkeypatch, {"GT_INTERVAL": "-3"})
    assert code == 78 and out.startswith("✗ configuration not readable: GT_INTERVAL")
    code, out = _doctor(capsys, monkeypatch, {"GT_TOWN_ROOT": str(tmp_path / "nowhere")})
    assert code == 1 and "✗ town not readable" in out and "    fix: " in out
    (town / "mayor" / "rigs.json").write_text("[1, 2", encoding="utf-8")
    code, out = _doctor(capsys, monkeypatch, {"GT_TOWN_ROOT": str(town),
                                              "GT_TMUX_SOCKET": "gtu-doctor-none",
                                              "TMUX_TMPDIR": str(tmp_path)}, "--json")
    assert code == 1
    rows = [json.loads(line) for line in out.splitlines()]
    assert {k: rows[0][k] for k in ("check", "ok")} == {"check": "town", "ok": False}
    assert "rigs.json" in rows[0]["detail"]
    assert any(r["check"] == "systemd" and r["ok"] is False for r in rows)


def test_hook_constants_match_what_tmux_ready_sets() -> None:
    from gastown_units import cli

    assert (dc.EVENT_HOOKS, dc.EVENT_HOOK_INDEX) == (cli.EVENT_HOOKS, cli.EVENT_HOOK_INDEX)
    path_unit = Path(__file__).resolve().parents[2].joinpath(
        "systemd", "gastown-polecat-health.path").read_text()
    assert f"PathExists={dc.EVENT_FILE}.pending" in path_unit
    assert "--event-file " + dc.EVENT_FILE in Path(
        __file__).resolve().parents[2].joinpath("systemd", "gastown-tmux.service").read_text()


def test_a_rigs_own_configuration_is_what_its_units_see(
        tmp_path: Path, town: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gastown_units.config import Settings
    from gastown_units.town.layout import Town

    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("bd", "gt"):
        (bindir / tool).write_text("#!/bin/sh\n", encoding="utf-8")
        (bindir / tool).chmod(0o755)
    conf = tmp_path / "gastown.conf"
    conf.write_text(f"GT_TOWN_ROOT={town}\nPATH={bindir}:/usr/bin:/bin\n"
                    "GT_AGENT_COMMAND=/bin/true\n", encoding="utf-8")
    (tmp_path / "rigs").mkdir()
    (tmp_path / "rigs" / "gastown.conf").write_text("PATH=/usr/bin:/bin\n", encoding="utf-8")
    for key in ("GT_TOWN_ROOT", "GT_AGENT_COMMAND", "GT_BD_BIN", "GT_GT_BIN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("GT_CONFIG", str(conf))
    settings = Settings.load()
    town_path = gather.units_path({"GT_CONFIG": str(conf)}, systemd=False)
    views, errors = gather.contexts(settings, ("gastown",), town_path,
                                    {"GT_CONFIG": str(conf)}, systemd=False)
    assert errors == [] and [v.rig for v in views] == [None, "gastown"]
    tools, error = gather.gather_tools(views, Town.open(town), ("gastown",), None)
    assert error == ""
    checks = dc.check_tools(dataclasses.replace(healthy(), tools=tools, path=town_path[0],
                                                path_source=town_path[1]))
    bad = [c for c in checks if c.ok is False]
    assert [c.detail for c in bad] == [
        "gt not on the units' PATH (/usr/bin:/bin) (rig gastown)",
        "bd not on the units' PATH (/usr/bin:/bin) (rig gastown)"]
    assert f"/etc/gastown/rigs/gastown.conf or {dc.CONF}" in bad[0].fix
    assert f"PATH in {tmp_path / 'rigs' / 'gastown.conf'}" in bad[0].fix
    ok = {c.detail for c in checks if c.ok}
    assert f"bd on the units' PATH: {bindir / 'bd'}" in ok
    assert any(d.startswith("runtime true on the units' PATH: /bin/true") for d in ok)

    (tmp_path / "rigs" / "gastown.conf").unlink()
    (tmp_path / "rigs" / "gastown.conf").mkdir()  # damaged: a directory
    views, errors = gather.contexts(settings, ("gastown",), town_path,
                                    {"GT_CONFIG": str(conf)}, systemd=False)
    assert len(views) == 1 and len(errors) == 1 and "gastown.conf" in errors[0]
    bad_conf = dc.check_tools(dataclasses.replace(healthy(), rig_config_errors=tuple(errors)))
    assert [c.ok for c in bad_conf if c.name == "rig-config"] == [False]


def test_an_unclear_dialect_fails_with_the_evidence_and_the_knob() -> None:
    facts = healthy()
    facts = type(facts)(**{**facts.__dict__, "dialect": "unknown",
                           "dialect_reason": "gt 0.9.0 is a 0.6-0.12 release"})
    bad = only_failure(facts)
    assert bad.name == "dialect" and "0.9.0" in bad.lines()[0]
    assert "GT_DIALECT=j or GT_DIALECT=l" in (bad.fix or "")


def test_the_dialect_is_shown() -> None:
    lines = [c.lines()[0] for c in dc.run_checks(healthy())]
    assert "✓ Gas Town dialect J (no [L] marker)" in lines


def test_an_l_town_with_its_server_outside_tmp_fails() -> None:
    facts = healthy()
    facts = type(facts)(**{**facts.__dict__, "dialect": "L", "tmux_tmpdir": "/run/tmux"})
    bad = only_failure(facts)
    assert bad.name == "tmux-tmpdir" and "/tmp/tmux-<uid>" in bad.lines()[0]


def test_gas_towns_user_unit_enabled_or_running_fails_with_the_handover_gastown_2026_6_11(
        ) -> None:
    unit = dc.UserDaemonUnit("alice", "/home/alice/.local/share/systemd/user/"
                             "gastown-daemon.service", enabled=True, running=(4242,))
    bad = only_failure(dataclasses.replace(healthy(), user_daemon=unit))
    assert "gastown-daemon.service of alice is enabled and running (PID 4242)" in bad.detail
    assert bad.fix.startswith("as alice: systemctl --user disable --now "
                              "gastown-daemon.service")
    off = dataclasses.replace(unit, enabled=False, running=())
    assert not failing(dataclasses.replace(healthy(), user_daemon=off))
    none = dc.UserDaemonUnit("alice")
    lines = [c.lines()[0] for c in dc.run_checks(dataclasses.replace(healthy(),
                                                                      user_daemon=none))]
    assert "✓ no Gas Town user unit gastown-daemon.service of alice" in lines


def test_town_down_mark_fails_with_how_to_resume() -> None:
    bad = only_failure(dataclasses.replace(healthy(), town_down="town down since X: gt down"))
    assert bad.detail == "town down since X: gt down"
    assert "gastown-units resume" in bad.fix and "gt up" in bad.fix


def test_user_unit_gathered_from_files_and_cgroups(tmp_path: Path) -> None:
    import pwd

    home = tmp_path / "home"
    owner = pwd.struct_passwd(("alice", "x", 1000, 1000, "", str(home), "/bin/sh"))
    proc = tmp_path / "proc"
    (proc / "77").mkdir(parents=True)
    (proc / "77" / "cgroup").write_text(
        "0::/user.slice/user-1000.slice/user@1000.service/app.slice/gastown-daemon.service\n")
    (proc / "78").mkdir()
    (proc / "78" / "cgroup").write_text("0::/system.slice/gastown-daemon.service\n")
    assert gather.gather_user_daemon(owner, {}, proc) == dc.UserDaemonUnit(
        "alice", running=(77,))
    unit_file = home / ".local/share/systemd/user/gastown-daemon.service"
    unit_file.parent.mkdir(parents=True)
    unit_file.write_text("[Service]\nExecStart=gt daemon run\n")
    wants = home / ".config/systemd/user/default.target.wants"
    wants.mkdir(parents=True)
    (wants / "gastown-daemon.service").symlink_to(unit_file)
    found = gather.gather_user_daemon(owner, {}, proc)
    assert (found.path, found.enabled) == (str(unit_file), True)
