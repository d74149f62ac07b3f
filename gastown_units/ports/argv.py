"""The one rule for argv elements that come from data (design rule 10).

Every argv element from data goes through this module or follows ``--``: a value from a
file, a tool's output, a mail or a name either has the grammar it must have (checked
here, with :func:`re.fullmatch`, never ``$``, which accepts a trailing newline) or the port
places it after ``--`` where the tool ends its options there. A value that fails raises
:class:`BadInput` before any program runs.

``grep -n "ports.argv\\|argv\\." gastown_units/ports`` lists every use.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from gastown_units.errors import BadInput
from gastown_units.town.names import check_name

#: Longest value we pass for an ID, prefix, address or ref: beyond it nothing is genuine,
#: and a ref over 255 bytes cannot be a file under ``refs/heads``.
MAX_ID = 200
MAX_PREFIX = 32
MAX_REF_BYTES = 255

# beads.md §7.5: ``<prefix>-<hash>``, children ``<parent>.N``; prefixes may hold hyphens
# (``hq-cv``), agent IDs hold names (``gt-gastown-polecat-Toast``). At least one hyphen,
# first character alphanumeric, no '=', '/', whitespace or control characters.
BEAD_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.]*(?:-[A-Za-z0-9_.]+)+")
# A prefix without its trailing '-' (gastown.md §1.3 strips one): ``gt``, ``hq-cv``.
PREFIX_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")
# Mail addresses (gastown.md §5.3): ``mayor/``, ``<rig>/witness``, ``<rig>/polecats/<n>``,
# ``*/witness``, ``@town``, ``group:x``.
ADDRESS_RE = re.compile(r"[A-Za-z0-9_@*][A-Za-z0-9_@*.:/-]*")
# git check-ref-format: no control characters, space, ~ ^ : ? * [ \ and DEL anywhere.
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def _shown(value: str) -> str:
    """The value for an error line: quoted, and cut so that a huge value stays one line."""
    return repr(value if len(value) <= 80 else f"{value[:80]}…")


def text_arg(value: str, what: str = "argument") -> str:
    """``value`` if a program can receive it intact: a str without NUL and encodable as
    UTF-8 (a lone surrogate from JSON is not); else BadInput. Free text (a subject, a
    body, keys typed into tmux) needs nothing more when it follows an option that takes
    a value or ``--``."""
    if not isinstance(value, str):
        raise BadInput(f"{what}: not text: {type(value).__name__}")
    if "\x00" in value:
        raise BadInput(f"{what} {_shown(value)} contains a NUL byte")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"{what} {_shown(value)} is not valid Unicode (lone surrogate)"
                       ) from None
    return value


def checked_argv(argv: Iterable[object]) -> tuple[str, ...]:
    """Every element as text that survives ``execve``; BadInput naming the first that
    does not (the runner's last line of defence: it never crashes on NUL or surrogates)."""
    args = tuple(str(a) for a in argv)
    for index, arg in enumerate(args):
        text_arg(arg, f"argument {index} of {args[0] if args else 'a command'}")
    return args


def _grammar(value: str, what: str, pattern: re.Pattern[str], limit: int, rule: str) -> str:
    text_arg(value, what)
    if len(value) > limit or pattern.fullmatch(value) is None:
        raise BadInput(f"invalid {what} {_shown(value)}: {rule}")
    return value


def checked_bead_id(value: str, what: str = "bead ID") -> str:
    """A bead ID per beads.md §7.5 (``gt-abc12``, ``hq-cv-x1``, ``bd-a3f8e9.1``)."""
    return _grammar(value, what, BEAD_ID_RE, MAX_ID,
                    f"expected <prefix>-<id> of letters, digits, '_', '.', at most {MAX_ID}")


def checked_prefix(value: str, what: str = "bead prefix") -> str:
    """A bead prefix without its trailing '-' (``gt``, ``hq-cv``)."""
    return _grammar(value, what, PREFIX_RE, MAX_PREFIX,
                    f"letters, digits, '_' and inner '-', at most {MAX_PREFIX}")


def checked_address(value: str, what: str = "mail address") -> str:
    """A ``gt mail`` address (``mayor/``, ``gastown/witness``, ``gastown/polecats/Toast``)."""
    return _grammar(value, what, ADDRESS_RE, MAX_ID,
                    f"letters, digits and _ @ * . : / - (not '-' first), at most {MAX_ID}")


def checked_name(kind: str, value: str) -> str:
    """A rig, polecat, crew or session name (:func:`gastown_units.town.names.check_name`)."""
    text_arg(value, f"{kind} name")
    return check_name(kind, value)


def ref_problem(name: str) -> str | None:
    """Why ``name`` is not a branch name by ``git check-ref-format --branch``, or None.

    git's rules, in pure Python (no process, so nothing from data reaches git unchecked):
    no '-' first, no '..', '@{', '//', control characters, space or ``~^:?*[\\``; not
    '@' or 'HEAD'; no leading or trailing '/', no trailing '.'; no component that starts
    with '.' or ends with '.lock'. Stricter than git: at most 255 UTF-8 bytes.
    """
    if not name:
        return "empty"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "not valid Unicode (lone surrogate)"
    if size > MAX_REF_BYTES:
        return f"longer than {MAX_REF_BYTES} bytes"
    if name.startswith("-"):
        return "starts with '-' (it would be read as an option)"
    if _REF_FORBIDDEN.search(name):
        return "contains a control character, a space or one of ~^:?*[\\"
    for bad in ("..", "@{", "//"):
        if bad in name:
            return f"contains {bad!r}"
    if name in ("@", "HEAD"):
        return f"is {name!r}"
    if name.startswith("/") or name.endswith("/") or name.endswith("."):
        return "starts or ends with '/', or ends with '.'"
    for part in name.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            return "a component starts with '.' or ends with '.lock'"
    return None


def checked_ref(value: str, what: str = "branch") -> str:
    """A branch name git accepts (:func:`ref_problem`), else BadInput."""
    text_arg(value, what)
    problem = ref_problem(value)
    if problem:
        raise BadInput(f"invalid {what} {_shown(value)}: {problem}")
    return value


def is_bead_id(value: str) -> bool:
    """Whether ``value`` may be passed to ``bd`` as a bead ID (see :func:`checked_bead_id`)."""
    try:
        checked_bead_id(value)
    except BadInput:
        return False
    return True


def usable_prefixes(prefixes: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Split rig → prefix into the usable ones and, for the others, why not: a rig whose
    prefix could become a ``bd`` option is left out (and said so), never the whole town."""
    usable: dict[str, str] = {}
    unusable: dict[str, str] = {}
    for rig, prefix in prefixes.items():
        try:
            usable[rig] = checked_prefix(prefix)
        except BadInput as exc:
            unusable[rig] = f"rig {rig}: {exc} (from .beads/routes.jsonl or mayor/rigs.json)"
    return usable, unusable
