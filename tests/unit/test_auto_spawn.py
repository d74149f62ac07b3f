"""Which ready issue auto-spawn slings next, and the backoff of failed slings (pure)."""

from __future__ import annotations

from gastown_units.services.auto_spawn import (
    Attempt,
    candidates,
    dump_book,
    forget_old,
    load_book,
    record,
    retry_after,
)

NOW = 1_000_000.0


def ready(*ids: str, **types: str) -> list[dict[str, object]]:
    return [{"id": i, "issue_type": types.get(i.replace("-", "_"), "task")} for i in ids]


def test_skips_epics_merge_requests_and_agent_beads() -> None:
    issues = ready("gt-a", "gt-b", "gt-c", "gt-d", gt_b="epic", gt_c="merge-request")
    issues.append({"id": "gt-gastown-polecat-nux", "issue_type": "task",
                   "labels": ["gt:agent"]})  # auto-created by bd agent state (beads.md §5.1)
    assert candidates(issues, {}, NOW, backoff=60, prefix=None) == ["gt-a", "gt-d"]


def test_prefix_filter() -> None:
    assert candidates(ready("gt-a", "bd-b"), {}, NOW, backoff=60, prefix="bd-") == ["bd-b"]


def test_a_failed_sling_waits_its_backoff_and_does_not_block_the_rest() -> None:
    book: dict[str, Attempt] = {}
    record(book, "gt-bad", ok=False, started=NOW)
    issues = ready("gt-bad", "gt-good")
    assert candidates(issues, book, NOW + 10, backoff=60, prefix=None) == ["gt-good"]
    assert candidates(issues, book, NOW + 61, backoff=60, prefix=None) == ["gt-bad", "gt-good"]


def test_backoff_doubles_per_failure_in_a_row_and_resets_on_success() -> None:
    book: dict[str, Attempt] = {}
    for n in range(3):
        record(book, "gt-bad", ok=False, started=NOW + n)
    assert book["gt-bad"].failures == 3
    assert retry_after(3, 60) == 240
    record(book, "gt-bad", ok=True, started=NOW + 5)
    assert book["gt-bad"] == Attempt(0, NOW + 5, True)
    record(book, "gt-bad", ok=False, started=NOW + 6)
    assert book["gt-bad"].failures == 1


def test_a_fresh_success_is_not_slung_again_before_the_hook_shows() -> None:
    book: dict[str, Attempt] = {}
    record(book, "gt-a", ok=True, started=NOW)
    assert candidates(ready("gt-a"), book, NOW + 5, backoff=60, prefix=None) == []


def test_book_round_trip_drops_damaged_entries_and_old_ones() -> None:
    book = {"gt-a": Attempt(2, NOW, False)}
    raw = dump_book(book) | {"gt-x": {"failures": "many"}, "gt-y": 5}
    loaded = load_book(raw)
    assert loaded == book
    assert load_book(["not", "a", "dict"]) == {}
    forget_old(loaded, NOW + 2 * 86400)
    assert loaded == {}
