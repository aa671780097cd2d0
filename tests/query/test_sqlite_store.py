"""What only the SQLite store does on the read side: index-ordered filters, FTS5 queries, tail, purge."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_middleware.model.event import Actor, Resource
from audit_middleware.query import sqlite_store as sqlite_store_module
from audit_middleware.query.model import AuditQuery, QueryError
from audit_middleware.query.sqlite_store import SQLiteStore, _Filter, drive_limit, fts_match
from audit_middleware.sinks.sqlite import SQLiteSink
from tests.query.conftest import DAY, MINUTE, NOW_MS, make_event


def _connect(target: SQLiteStore | SQLiteSink) -> sqlite3.Connection:
    return sqlite3.connect(target.path)


# -- filters --------------------------------------------------------------------------------


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "with-statistics"])
@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"action": "delete"},
        {"action": "start-stop"},
        {"resource_type": "pod"},
        {"user": "u1"},
        {"user": "u1", "action": "delete"},
        {"project": "p1"},
        {"outcome": "failure"},
        {"since": "7d"},
        {"search": "web"},
        {"search": "web", "user": "ann@example.com"},
    ],
)
def test_filters_read_in_index_order(
    sqlite_store: SQLiteStore, sqlite_sink: SQLiteSink, filters: dict[str, str], analyzed: bool
) -> None:
    """Every filter's first page walks the tenant's time index in order: no table scan, no sort.

    Also once ANALYZE has run (close() runs PRAGMA optimize), which changes SQLite's choices.
    (Without driving: a full-text set with few matches reads its rows instead, tested below.)
    """
    if analyzed:
        users = [Actor(id=f"u{n}", email=f"user{n}@example.com") for n in range(20)]
        sqlite_sink.write(
            make_event(
                action, ago_ms=n * MINUTE, user=users[n % 20], resource=Resource("pod", str(n), f"web-{n}")
            )
            for n, action in enumerate(["create", "delete", "start", "login"] * 150)
        )
        _connect(sqlite_store).execute("ANALYZE")
    conn = _connect(sqlite_store)
    where = _Filter.of(AuditQuery.build("acme", **filters), conn)  # type: ignore[arg-type]
    assert where is not None
    sql, params = where.select("document")
    plan = _plan(conn, f"{sql} ORDER BY unix_ms DESC, event_id DESC", params)
    assert plan.startswith("SEARCH events USING INDEX events_by_time (tenant=?"), plan
    assert "SCAN events " not in plan + " "
    assert "TEMP B-TREE" not in plan


def _plan(conn: sqlite3.Connection, sql: str, params: list[object]) -> str:
    return " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


@pytest.mark.parametrize("filters", [{"user": "u1"}, {"search": "web-3"}, {"user": "u1", "search": "web"}])
def test_a_full_text_set_with_few_matches_drives_the_query(
    sqlite_store: SQLiteStore, sqlite_sink: SQLiteSink, filters: dict[str, str]
) -> None:
    """A user or a text with few matches reads just those rows by rowid, then sorts them."""
    users = [Actor(id=f"u{n}", email=f"user{n}@example.com") for n in range(20)]
    sqlite_sink.write(
        make_event(
            "create", ago_ms=n * MINUTE, user=users[n % 20], resource=Resource("pod", str(n), f"web-{n}")
        )
        for n in range(300)
    )
    conn = _connect(sqlite_store)
    where = _Filter.of(AuditQuery.build("acme", **filters), conn, drive=50)  # type: ignore[arg-type]
    assert where is not None
    assert where.driving is not None
    assert 0 < len(where.driving) <= 20
    sql, params = where.select("document")
    plan = _plan(conn, f"{sql} ORDER BY unix_ms DESC, event_id DESC", params)
    assert plan.startswith("SEARCH events USING INTEGER PRIMARY KEY (rowid=?)"), plan
    expected = sqlite_store.search(AuditQuery.build("acme", page_size=500, **filters))  # type: ignore[arg-type]
    walked = _Filter.of(AuditQuery.build("acme", **filters), conn)  # type: ignore[arg-type]
    assert walked is not None
    walked_sql, walked_params = walked.select("event_id")
    ids = [
        row[0] for row in conn.execute(f"{walked_sql} ORDER BY unix_ms DESC, event_id DESC", walked_params)
    ]
    assert [event.id for event in expected.events] == ids


def test_the_bounded_count_stops_at_its_limit(sqlite_store: SQLiteStore, sqlite_sink: SQLiteSink) -> None:
    """count_bounded is exact below the limit and says "N+" at it; count() stays exact."""
    sqlite_sink.write(make_event("create", ago_ms=n * MINUTE) for n in range(30))
    query = AuditQuery.build("acme")
    assert str(sqlite_store.count_bounded(query, 100)) == "30"
    capped = sqlite_store.count_bounded(query, 10)
    assert (capped.value, capped.more, str(capped)) == (10, True, "10+")
    assert str(sqlite_store.count_bounded(query, 30)) == "30", "exactly the limit is no more than it"
    assert sqlite_store.count(query) == 30


def test_reopening_keeps_the_records(tmp_path: Path) -> None:
    """A second store on the same file sees what the first stored."""
    event = make_event("create")
    with SQLiteSink(tmp_path / "a.sqlite3") as first:
        first.write([event])
    with SQLiteStore(tmp_path / "a.sqlite3") as second:
        assert second.get("acme", event.id) is not None


# -- free text -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("prod", '"prod"*'),
        ("Prod DB", '"prod"* AND "db"*'),
        ("ann@example.com", '"ann example com"*'),
        ('"prod" OR web*', '"prod"* AND "or"* AND "web"*'),
        ("NEAR(a b)", '"near a"* AND "b"*'),
        ("field:value", '"field value"*'),
        ("prod prod", '"prod"*'),
        ("a\x00b", '"a b"*'),
        ("***", None),
        ('"', None),
        ("🚀", None),
        ("", None),
    ],
)
def test_fts_match_quotes_every_word(text: str, expected: str | None) -> None:
    """Words become quoted prefix phrases of index tokens; syntax characters disappear."""
    assert fts_match(text) == expected


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_any_text_is_a_valid_match_expression(text: str) -> None:
    """Whatever the user types, FTS5 accepts the expression built from it."""
    match = fts_match(text)
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE VIRTUAL TABLE t USING fts5(a, tokenize='unicode61 remove_diacritics 2', prefix='2 3')"
    )
    conn.execute("INSERT INTO t (a) VALUES (?)", (text,))
    if match is not None:
        hits = conn.execute("SELECT count(*) FROM t WHERE t MATCH ?", (match,)).fetchone()[0]
        assert hits in (0, 1)


@pytest.mark.parametrize("text", ["cafe", "CAFÉ", "Cafe ser", "serv"])
def test_search_folds_accents(sqlite_store: SQLiteStore, sqlite_sink: SQLiteSink, text: str) -> None:
    """The tokenizer removes diacritics: "cafe" finds "Café Server"."""
    event = make_event("restart", resource=Resource("virtual_machine", "vm", "Café Server"))
    sqlite_sink.write([event, make_event("create", resource=Resource("pod", "p", "Cabbage"))])
    found = sqlite_store.search(AuditQuery.build("acme", search=text)).events
    assert [e.id for e in found] == [event.id]


# -- iterate, tail, purge ------------------------------------------------------------------


def test_iterate_is_a_snapshot(sqlite_store: SQLiteStore, sqlite_sink: SQLiteSink) -> None:
    """Events stored while an export runs are not part of it."""
    sqlite_sink.write([make_event("create", ago_ms=index * MINUTE) for index in range(2500)])
    events = sqlite_store.iterate(AuditQuery(tenant="acme"))
    first = next(events)
    sqlite_sink.write([make_event("create", unix_ms=NOW_MS + 1), make_event("create", ago_ms=DAY)])
    assert 1 + sum(1 for _ in events) == 2500
    assert first.unix_ms == NOW_MS


def test_tail_starts_when_called(sqlite_store: SQLiteStore, sqlite_sink: SQLiteSink) -> None:
    """An event stored between tail() and the first next() is yielded, older ones are not."""
    sqlite_sink.write([make_event("create", ago_ms=MINUTE)])
    stop = threading.Event()
    live = sqlite_store.tail(AuditQuery(tenant="acme"), poll_interval=0.05, stop=stop)
    late = make_event("create", ago_ms=DAY)  # arrives now, with an old timestamp (a replayed spool)
    sqlite_sink.write([late])
    assert [event.id for event in next(live)] == [late.id]
    stop.set()
    assert list(live) == []


def test_tail_yields_large_arrivals_in_batches(sqlite_store: SQLiteStore, sqlite_sink: SQLiteSink) -> None:
    """More new events than a batch holds come as several batches, none lost."""
    stop = threading.Event()
    live = sqlite_store.tail(AuditQuery(tenant="acme"), poll_interval=0.05, stop=stop)
    sqlite_sink.write([make_event("create", ago_ms=index) for index in range(2500)])
    sizes = [len(next(live)) for _ in range(3)]
    stop.set()
    assert sizes == [1000, 1000, 500]


def test_purge_deletes_old_records_in_chunks(
    sqlite_store: SQLiteStore, sqlite_sink: SQLiteSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """purge_older_than removes every tenant's old records, also from the search index."""
    monkeypatch.setattr(sqlite_store_module, "_PURGE_CHUNK", 3)
    old = [
        make_event("create", tenant=tenant, ago_ms=100 * DAY, resource=Resource("pod", "p", "ancient"))
        for tenant in ("acme", "globex")
        for _ in range(5)
    ]
    recent = make_event("create", ago_ms=DAY, resource=Resource("pod", "p", "ancient"))
    sqlite_sink.write([*old, recent])
    cutoff = datetime.fromtimestamp(NOW_MS / 1000, tz=timezone.utc) - timedelta(days=90)
    assert sqlite_store.purge_older_than(cutoff) == 10
    assert [e.id for e in sqlite_store.search(AuditQuery(tenant="acme", text="ancient")).events] == [
        recent.id
    ]
    assert sqlite_store.count(AuditQuery(tenant="globex")) == 0
    conn = _connect(sqlite_store)
    conn.execute("INSERT INTO events_fts (events_fts) VALUES ('integrity-check')")


def test_purge_needs_an_aware_cutoff(sqlite_store: SQLiteStore) -> None:
    """A naive datetime is ambiguous: refused."""
    with pytest.raises(QueryError, match="timezone"):
        sqlite_store.purge_older_than(datetime(2020, 1, 1))  # naive on purpose


def test_another_filter_lets_a_larger_full_text_set_drive(sqlite_store: SQLiteStore) -> None:
    """With a date range or an action beside the user, the walk finds fewer hits: driving pays sooner."""
    conn = _connect(sqlite_store)
    plain = drive_limit(conn, AuditQuery.build("acme", user="u1"))
    narrowed = drive_limit(conn, AuditQuery.build("acme", user="u1", since="7d", action="update"))
    assert narrowed == 8 * plain


def test_a_bounded_count_of_a_large_full_text_set_reads_along_it(
    sqlite_store: SQLiteStore, sqlite_sink: SQLiteSink
) -> None:
    """A user above the drive limit is counted along its FTS rows (rowid lookups), capped, and right."""
    others = [make_event("create", ago_ms=n * MINUTE, user=Actor(id=f"o{n}")) for n in range(40)]
    mine = [make_event("delete", ago_ms=n * MINUTE + 1, user=Actor(id="busy")) for n in range(30)]
    sqlite_sink.write([*others, *mine])
    conn = _connect(sqlite_store)
    query = AuditQuery.build("acme", user="busy")
    where = _Filter.of(query, conn)
    assert where is not None
    sql, params = where.select("1")
    plan = _plan(conn, sqlite_store_module._by_full_text(where, sql), params)
    assert plan.startswith("SEARCH events USING INTEGER PRIMARY KEY (rowid=?)"), plan
    assert (sqlite_store.count_bounded(query, 10).value, sqlite_store.count_bounded(query, 100).value) == (
        10,
        30,
    )
