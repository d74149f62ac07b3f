"""Seeded input generators: random bytes, random JSON, mutations of the contracts' examples,
hostile strings. Every input is a pure function of ``(seed, entry point, index)``."""

from __future__ import annotations

import json
import random
from typing import Any

# Strings that have broken parsers before, or that a careless one would trip over.
HOSTILE: tuple[str, ...] = (
    "", " ", "\t", "\n", "\r\n", "\x00", "a\x00b", "\x1b[2J", "\x7f", "\u200b", "\u202e",
    "\ufeff", "\ufeff{}", "\ud800", "\udfff", "\U0001f63a", "é", "ß", "İ", "ﬀ", "²", "¹²³",
    "٣", "١٢٣", "½", "Ⅻ", "0", "-0", "-1", "1", "00", "+1", "1_000", "0x10", "1e999",
    "-1e999", "NaN", "nan", "inf", "-inf", "Infinity", "1.5", ".5", "5.", "9" * 400,
    "9" * 5000, "true", "false", "null", "None", "[]", "{}", "[", "{", "]", "}", '"', "'",
    "\\", "\\u0000", "%s%n%x", "{0}", "{rig}", "#{pane_pid}", "$(id)", "`id`", "${IFS}",
    "; rm -rf /", "|", "&", "*", "?", "~", "~root", "~nosuchuser-fuzz/x", "/", ".", "..",
    "./", "../../etc/passwd", "/etc/passwd", "-", "--", "--help", "-h", "=", "=x", ":", "::",
    "a:b", "a\nb", "a\tb", " gastown ", "gastown\n", "gastown", "gt", "hq", "gt-", "hq-",
    "gt-gastown-polecat-nux", "gt-gastown-witness", "gastown/witness", "gastown/refinery",
    "gastown/nux", "gastown/polecats/nux", "gastown/crew/max", "gastown-crew-max",
    "deacon/", "mayor/", "deacon/dogs/boot", "hq-deacon", "gt-boot", "polecat-nux",
    "LIFECYCLE: gastown/witness requesting cycle", "lifecycle: nux requesting shutdown",
    "LIFECYCLE:", "cycle", "restart", "shutdown", "stop", "action: cycle", "Action: STOP",
    '{"action":"cycle"}', '{"action":null}', '{"action":["stop"]}', "polecat: nux",
    "0001-01-01T00:00:00Z", "0001-01-01T00:30:00+01:00", "0001-01-02T00:00:00+23:59",
    "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-23:59", "9999-12-31T23:59:59.999999999Z",
    "2026-01-25T18:38:59.123456789-08:00", "2026-01-25T18:38:59.Z", "2026-01-25T18:38:59",
    "2026-13-45T99:99:99Z", "2026-01-25", "20260125T183859Z", "2026-01-25T18:38:59+25:00",
    "2026-01-25T18:38:59.1234567890123456789012345678901234567890Z",
    "x" * 300, "é" * 200, "a" * 70000,
)

# Keys the readers look for: random objects use them so that they reach deep code.
KEYS: tuple[str, ...] = (
    "id", "title", "description", "status", "labels", "hook_bead", "agent_state",
    "updated_at", "created_at", "issue_type", "error", "data", "schema_version", "from",
    "to", "subject", "body", "timestamp", "read", "rigs", "beads", "prefix", "path", "repo",
    "values", "blocked", "auto_restart", "rig", "cycle", "last_action", "at", "by", "request",
    "session", "agents", "restart_count", "last_restart", "backoff_until", "crash_loop_since",
    "window_start", "incidents", "dead", "deaths", "step", "activity", "failures", "last",
    "ok", "action", "patrols", "enabled", "deacon", "witness", "refinery", "role_agents",
    "agent", "runtime", "default_agent", "command", "args", "prompt_mode", "tmux",
    "ready_prompt_prefix", "ready_delay_ms", "default_branch", "requesting_cycle",
    "requesting_restart", "requesting_shutdown", "requesting_time", "polecat", "claude",
    "codex", "version", "type", "name", "owner", "git_url", "added_at", "gastown", "gt",
    "sessions", "pid", "spawning", "book", "entries", "ladder", "", "\x00", "é",
)


class Gen:
    """One input's generator: a ``random.Random`` and the building blocks."""

    def __init__(self, rng: random.Random, seeds: tuple[Any, ...] = ()) -> None:
        self.rng = rng
        self.seeds = seeds

    # --- scalars ------------------------------------------------------------------------
    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, items: Any) -> Any:
        return items[self.rng.randrange(len(items))]

    def raw_bytes(self, limit: int = 300) -> bytes:
        n = self.rng.choice((0, 1, 2, self.rng.randrange(limit), self.rng.randrange(limit * 4)))
        if self.chance(0.3):  # mostly printable, some high bytes: invalid UTF-8 often
            return bytes(self.rng.choice(b" \t\n{}[]\":,abc019-\\\xff\xc3\xa9\x80")
                         for _ in range(n))
        return self.rng.randbytes(n)

    def char(self) -> str:
        r = self.rng.random()
        if r < 0.6:
            return chr(self.rng.randrange(32, 127))
        if r < 0.75:
            return self.pick("\t\n\r\x00\x1b\x7f")
        if r < 0.9:
            return chr(self.rng.randrange(0xA0, 0x3000))
        if r < 0.95:
            return chr(self.rng.randrange(0xD800, 0xE000))  # lone surrogates
        return chr(self.rng.randrange(0x10000, 0x110000))

    def text(self, limit: int = 40) -> str:
        r = self.rng.random()
        if r < 0.45:
            return self.pick(HOSTILE)
        if r < 0.6:
            return self.pick(HOSTILE) + self.pick(HOSTILE)
        if r < 0.75:
            return self.pick(KEYS)
        return "".join(self.char() for _ in range(self.rng.randrange(limit)))

    def name(self) -> str:
        """A string for a name slot: usually a valid name, sometimes anything."""
        if self.chance(0.7):
            alphabet = "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789_-"
            return "".join(self.pick(alphabet) for _ in range(self.rng.randrange(1, 12)))
        return self.text()

    def number(self) -> Any:
        return self.pick((0, 1, -1, 2, 3, 5, 42, 2**31, 2**63, -2**63, 10**30, 10**400,
                          self.rng.randrange(-10**6, 10**6), 0.5, -0.0, 1e308, -1e308,
                          float("inf"), float("-inf"), float("nan"), 1.7e9, 253402300800.0,
                          -62135596800.0, self.rng.uniform(-1e10, 1e10)))

    def scalar(self) -> Any:
        r = self.rng.random()
        if r < 0.1:
            return None
        if r < 0.2:
            return self.chance(0.5)
        if r < 0.45:
            return self.number()
        return self.text()

    # --- JSON ---------------------------------------------------------------------------
    def value(self, depth: int = 0) -> Any:
        r = self.rng.random()
        if depth > 4 or r < 0.5:
            return self.scalar()
        if r < 0.7:
            return [self.value(depth + 1) for _ in range(self.rng.randrange(5))]
        return {self.pick(KEYS) if self.chance(0.8) else self.text(): self.value(depth + 1)
                for _ in range(self.rng.randrange(6))}

    def mutate(self, obj: Any, rounds: int | None = None) -> Any:
        """A structural mutation of a JSON value: nodes replaced, dropped, added, retyped."""
        obj = json.loads(json.dumps(obj))
        for _ in range(rounds if rounds is not None else self.rng.randrange(1, 4)):
            obj = self._mutate_once(obj, 0)
        return obj

    def _mutate_once(self, node: Any, depth: int) -> Any:
        r = self.rng.random()
        if isinstance(node, dict) and node and r < 0.75:
            key = self.pick(sorted(node, key=str))
            op = self.rng.random()
            if op < 0.15:
                del node[key]
            elif op < 0.3:
                node[self.pick(KEYS)] = self.value(depth + 1)
            else:
                node[key] = self._mutate_once(node[key], depth + 1)
            return node
        if isinstance(node, list) and node and r < 0.75:
            i = self.rng.randrange(len(node))
            op = self.rng.random()
            if op < 0.15:
                del node[i]
            elif op < 0.3:
                node.insert(i, self.value(depth + 1))
            else:
                node[i] = self._mutate_once(node[i], depth + 1)
            return node
        if isinstance(node, str) and r < 0.5:
            return self.mutate_text(node)
        return self.value(depth)

    def mutate_text(self, text: str) -> str:
        """Character-level damage: truncation, insertion, deletion, duplication."""
        op = self.rng.random()
        i = self.rng.randrange(len(text) + 1)
        if op < 0.25:
            return text[:i]
        if op < 0.5:
            return text[:i] + self.text() + text[i:]
        if op < 0.7:
            j = min(len(text), i + self.rng.randrange(1, 8))
            return text[:i] + text[j:]
        if op < 0.8:
            return text + text
        if op < 0.9:
            return text.upper()
        return self.text()

    def dumps(self, obj: Any) -> str:
        indent = self.pick((None, None, 2))
        return json.dumps(obj, indent=indent, ensure_ascii=self.chance(0.5))

    def deep(self) -> str:
        depth = self.pick((50, 999, 5000, 100000))
        opener, closer = self.pick((("[", "]"), ('{"a":', "}"), ('{"rigs":[', "]}")))
        return opener * depth + closer * depth * self.rng.randrange(2)

    def json_text(self, seeds: tuple[Any, ...] | None = None) -> str:
        """The text of a JSON document: mostly mutated seeds, some random, some broken."""
        seeds = self.seeds if seeds is None else seeds
        r = self.rng.random()
        if seeds and r < 0.5:
            return self.dumps(self.mutate(self.pick(seeds)))
        if seeds and r < 0.6:
            return self.dumps(self.pick(seeds))
        if r < 0.75:
            return self.dumps(self.value())
        if seeds and r < 0.88:
            return self.mutate_text(self.dumps(self.pick(seeds)))
        if r < 0.96:
            return self.text(200)
        return self.deep()

    def document(self, seeds: tuple[Any, ...] | None = None) -> bytes:
        """A file's bytes: usually JSON text (UTF-8, lone surrogates kept), else raw bytes."""
        if self.chance(0.1):
            return self.raw_bytes()
        return self.json_text(seeds).encode("utf-8", "surrogatepass")

    def jsonl(self, seeds: tuple[Any, ...]) -> bytes:
        """A JSON-lines file: several documents, comments, blank and broken lines."""
        lines = []
        for _ in range(self.rng.randrange(6)):
            r = self.rng.random()
            if r < 0.1:
                lines.append(self.pick(("", "#", "# comment", "   ")))
            else:
                lines.append(self.json_text(seeds).replace("\n", " ") if r < 0.9
                             else self.text())
        sep = self.pick(("\n", "\r\n", "\n\n"))
        data = sep.join(lines).encode("utf-8", "surrogatepass")
        return data if not self.chance(0.05) else data + self.raw_bytes()
