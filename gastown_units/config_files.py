"""The configuration files the units read, read the same way by every command.

A unit gets ``/etc/gastown/gastown.conf`` and (rig services) ``/etc/gastown/rigs/<rig>.conf``
through ``EnvironmentFile=``; an operator's ``gastown-units status`` gets no such thing from
the shell. So every command reads those files itself, in the units' order — the town file,
then the rig's file, then the environment, then flags, each later one winning — and
``gastown-units config`` can say where each value came from.

``GT_CONFIG`` (or ``--config FILE``) names another town file; ``GT_CONFIG=`` (empty) reads
none. The parser follows systemd's ``EnvironmentFile=`` syntax (systemd.exec(5)).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gastown_units.errors import ConfigError
from gastown_units.town.jsonfile import DamagedFile, read_text

DEFAULT_CONFIG = Path("/etc/gastown/gastown.conf")
RIG_CONFIG_DIR = Path("/etc/gastown/rigs")
CONFIG_ENV = "GT_CONFIG"
MAX_CONFIG_BYTES = 1024 * 1024

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "$": "$", "`": "`"}


def parse_environment_file(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines as systemd reads them: ``#``/``;`` comments, optional quotes
    (backslash escapes inside double quotes), a trailing backslash continues the line.
    Lines that are no assignment, or whose name is not a valid variable name, are
    skipped (systemd logs and skips them too).

    >>> parse_environment_file('# c\\nA=1\\n B = "two words" \\nC=\\'x\\'\\nbad line\\nD=a\\\\\\nb')
    {'A': '1', 'B': 'two words', 'C': 'x', 'D': 'ab'}
    """
    values: dict[str, str] = {}
    for line in _logical_lines(text):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        name, sep, value = stripped.partition("=")
        name = name.strip()
        if not sep or not _NAME.fullmatch(name):
            continue
        values[name] = _unquote(value.strip())
    return values


def _logical_lines(text: str) -> Iterator[str]:
    pending = ""
    for raw in text.splitlines():
        if raw.endswith("\\") and not raw.lstrip().startswith(("#", ";")):
            pending += raw[:-1]
            continue
        yield pending + raw
        pending = ""
    if pending:
        yield pending


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        out, chars = [], iter(value[1:-1])
        for char in chars:
            if char == "\\":
                nxt = next(chars, "")
                out.append(_ESCAPES.get(nxt, "\\" + nxt))
            else:
                out.append(char)
        return "".join(out)
    return value


def read_environment_file(path: Path) -> dict[str, str] | None:
    """The file's assignments; ``None`` if it does not exist; ConfigError (one line that
    names the file) if it exists but cannot be read."""
    try:
        text = read_text(path, limit=MAX_CONFIG_BYTES, shown_only=True)
    except DamagedFile as exc:
        raise ConfigError(f"configuration file {exc}") from None
    return None if text is None else parse_environment_file(text)


@dataclass(frozen=True)
class Layer:
    """One source of values: its name (a file path, "environment") and its assignments."""

    source: str
    values: Mapping[str, str]


@dataclass(frozen=True)
class Layers:
    """Every source in the units' order; later layers win."""

    layers: tuple[Layer, ...] = field(default_factory=tuple)

    def lookup(self, name: str) -> tuple[str, str] | None:
        """(value, source) of ``name`` from the last layer that sets it."""
        for layer in reversed(self.layers):
            if name in layer.values:
                return layer.values[name], layer.source
        return None

    def merged(self) -> dict[str, str]:
        """Every name with its winning value (what a unit's process would see)."""
        out: dict[str, str] = {}
        for layer in self.layers:
            out.update(layer.values)
        return out


def config_file(environ: Mapping[str, str]) -> Path | None:
    """The town configuration file: ``GT_CONFIG`` if set (empty: none), else the default."""
    named = environ.get(CONFIG_ENV)
    if named is None:
        return DEFAULT_CONFIG
    return Path(named) if named.strip() else None


def rig_config_file(rig: str, town_file: Path | None) -> Path:
    """``rigs/<rig>.conf`` next to the town file (``/etc/gastown/rigs/<rig>.conf``)."""
    base = town_file.parent / "rigs" if town_file is not None else RIG_CONFIG_DIR
    return base / f"{rig}.conf"


#: PATH of a unit that sets none (systemd's default for system services, v252).
SYSTEMD_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def configured_path(environ: Mapping[str, str], rig: str | None = None
                    ) -> tuple[str, str] | None:
    """The PATH the configuration files give the units (``EnvironmentFile=``), and the
    file; None when they set none. The caller's own PATH is not the units'."""
    for layer in reversed(layers(environ, rig).layers):
        if layer.source != "environment" and "PATH" in layer.values:
            return layer.values["PATH"], layer.source
    return None


def layers(environ: Mapping[str, str], rig: str | None = None) -> Layers:
    """The town file, the rig's file (when ``rig``), then ``environ``."""
    found: list[Layer] = []
    town_file = config_file(environ)
    if town_file is not None:
        values = read_environment_file(town_file)
        if values is not None:
            found.append(Layer(str(town_file), values))
        elif CONFIG_ENV in environ:
            raise ConfigError(f"configuration file {town_file}: not found")
    if rig is not None:
        rig_file = rig_config_file(rig, town_file or DEFAULT_CONFIG)
        values = read_environment_file(rig_file)
        if values is not None:
            found.append(Layer(str(rig_file), values))
    found.append(Layer("environment", dict(environ)))
    return Layers(tuple(found))
