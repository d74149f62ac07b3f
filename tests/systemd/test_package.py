"""Packaging smoke tests: the .deb in a real systemd 252 guest.

The tests run in file order on one guest: the last one removes the package.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.harness.guest import GuestSystemd

PACKAGE = "gastown-units"
UNIT_RE = re.compile(r"/systemd/system/[^/]+\.(service|target|timer|path|socket)$")


def unit_files(guest: GuestSystemd) -> list[str]:
    """Absolute paths of the package's unit files, from ``dpkg -L`` (lib/ or usr/lib/)."""
    files = guest.run(["dpkg", "-L", PACKAGE]).stdout.splitlines()
    units = sorted(f for f in files if UNIT_RE.search(f))
    assert units, f"{PACKAGE} ships no unit files:\n" + "\n".join(files)
    return units


def unit_names(guest: GuestSystemd, *, templates: bool = False) -> list[str]:
    names = [Path(f).name for f in unit_files(guest)]
    return [n for n in names if templates or "@." not in n]


def test_deb_installs(guest: GuestSystemd) -> None:
    status = guest.run(["dpkg-query", "-W", "-f=${Status}", PACKAGE]).stdout
    assert status == "install ok installed"
    assert guest.run(["dpkg", "-S", "/usr/bin/gastown-units"]).stdout.startswith(PACKAGE)


def test_version(guest: GuestSystemd) -> None:
    version = guest.run(["dpkg-query", "-W", "-f=${Version}", PACKAGE]).stdout
    upstream = version.split("-")[0]
    result = guest.run(["/usr/bin/gastown-units", "--version"])
    assert upstream in result.stdout, result.stdout


def test_units_pass_systemd_analyze_verify(guest: GuestSystemd) -> None:
    units = unit_files(guest)
    result = guest.run(["systemd-analyze", "verify", *units], check=False)
    ours = [line for line in (result.stdout + result.stderr).splitlines()
            if "gastown" in line]
    assert result.returncode == 0 and not ours, (
        f"systemd-analyze verify {' '.join(units)} -> exit {result.returncode}\n"
        f"{result.stdout}{result.stderr}")


def test_nothing_enabled_or_running_after_install(guest: GuestSystemd) -> None:
    for unit in unit_names(guest, templates=True):
        state = guest.systemctl("is-enabled", unit, check=False).stdout.strip()
        assert state in ("disabled", "static"), f"{unit} is {state!r} right after install"
    for unit in unit_names(guest):
        active = guest.show(unit, "ActiveState")["ActiveState"]
        assert active == "inactive", f"{unit} is {active!r} right after install"
    assert guest.systemctl("is-active", "gastown-tmux.service", check=False
                           ).stdout.strip() == "inactive"
    running = guest.systemctl("list-units", "--no-legend", "--plain", "--state=active",
                              "gastown*").stdout
    assert running.strip() == "", running


def test_config_is_a_conffile(guest: GuestSystemd) -> None:
    conffiles = guest.run(["dpkg-query", "--showformat=${Conffiles}", "-W", PACKAGE]).stdout
    assert re.search(r"^ /etc/gastown/gastown\.conf [0-9a-f]{32}$", conffiles, re.M), conffiles


def test_maintainer_scripts_never_stop_or_restart_tmux_on_upgrade(
        guest: GuestSystemd) -> None:
    """Only the prerm's 'remove' branch may stop gastown-tmux.service."""
    for script in ("preinst", "postinst", "prerm"):
        path = f"/var/lib/dpkg/info/{PACKAGE}.{script}"
        if guest.run(["test", "-e", path], check=False).returncode != 0:
            continue
        for line in guest.read_file(path).splitlines():
            if re.search(r"\b(stop|restart|try-restart|reload-or-restart)\b", line) \
                    and "deb-systemd-invoke" in line:
                assert "gastown-tmux" not in line, f"{script}: {line}"
                assert "gastown.target" not in line or script == "prerm", f"{script}: {line}"


def test_upgrade_keeps_tmux_running(guest: GuestSystemd, deb_path: Path) -> None:
    """A reinstall runs the upgrade paths (postinst configure OLD-VERSION)."""
    unit = "gastown-tmux.service"
    guest.systemctl("start", unit)
    before = guest.wait_for(lambda: _running(guest, unit), timeout=30,
                            what=f"{unit} active")
    guest.install_deb(deb_path, reinstall=True)
    after = guest.show(unit, "ActiveState", "MainPID", "NRestarts")
    assert after == before, f"{unit} was disturbed by the upgrade: {before} -> {after}"
    guest.systemctl("stop", unit)


def test_documentation_links_of_every_unit_work(guest: GuestSystemd) -> None:
    for unit in unit_names(guest, templates=True):
        shown = unit.replace("@.", "@x.")
        links = guest.show(shown, "Documentation")["Documentation"].split()
        assert links, f"{unit} has no Documentation="
        for link in (each.strip('"') for each in links):
            if link.startswith("file://"):
                target = link.removeprefix("file://")
            elif link.startswith("man:"):
                page, _, section = link.removeprefix("man:").rstrip(")").partition("(")
                target = f"/usr/share/man/man{section}/{page}.{section}.gz"
            else:
                raise AssertionError(f"{unit}: unexpected Documentation= link {link}")
            assert guest.run(["test", "-f", target], check=False).returncode == 0, \
                f"{unit}: {link} -> {target} is not installed"


def test_bash_completion_is_installed(guest: GuestSystemd) -> None:
    path = "/usr/share/bash-completion/completions/gastown-units"
    script = guest.read_file(path)
    assert "_GASTOWN_UNITS_COMPLETE=bash_complete" in script
    words = guest.run(["bash", "-c", f"source {path}; COMP_WORDS=(gastown-units se); "
                       "COMP_CWORD=1; _gastown_units_completion gastown-units; "
                       'echo "${COMPREPLY[@]}"'], env={"PATH": "/usr/bin:/bin"}).stdout.split()
    assert "setup" in words, words


def test_a_sweep_that_exits_1_is_a_success_78_is_not(guest: GuestSystemd) -> None:
    shown = guest.show("gastown-polecat-health.service", "SuccessExitStatus")
    assert shown["SuccessExitStatus"].split() == ["1"], shown


def test_remove_stops_units_and_works_cleanly(guest: GuestSystemd) -> None:
    guest.systemctl("start", "gastown.target")
    assert guest.show("gastown.target", "ActiveState")["ActiveState"] == "active"
    units = unit_files(guest)

    guest.run(["apt-get", "remove", "-y", PACKAGE], env={"DEBIAN_FRONTEND": "noninteractive"},
              timeout=300)
    status = guest.run(["dpkg-query", "-W", "-f=${Status}", PACKAGE]).stdout
    assert status == "deinstall ok config-files"
    state = guest.show("gastown.target", "ActiveState")["ActiveState"]
    assert state == "inactive", f"gastown.target is {state!r} after remove"
    for path in [*units, "/usr/bin/gastown-units"]:
        assert guest.run(["test", "-e", path], check=False).returncode != 0, path
    assert guest.run(["test", "-f", "/etc/gastown/gastown.conf"], check=False).returncode == 0

    guest.run(["apt-get", "purge", "-y", PACKAGE], env={"DEBIAN_FRONTEND": "noninteractive"},
              timeout=300)
    assert guest.run(["test", "-e", "/etc/gastown/gastown.conf"], check=False).returncode != 0
    failed = guest.systemctl("list-units", "--failed", "--no-legend", "--plain",
                             "gastown*").stdout
    assert failed.strip() == "", failed


def _running(guest: GuestSystemd, unit: str) -> dict[str, str] | None:
    props = guest.show(unit, "ActiveState", "MainPID", "NRestarts")
    return props if props["ActiveState"] == "active" and props["MainPID"] != "0" else None
