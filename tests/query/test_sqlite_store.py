"""What only the SQLite store does: schema, FTS5 query building, the sink side, retention."""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_middleware import config as audit_config
from audit_middleware import record
from audit_middleware.opensearch.sink import OpenSearchSink
from audit_middleware.query import sqlite_store as sqlite_store_module
from audit_middleware.query.model import AuditQuery, QueryError
from audit_middleware.query.sqlite_store import (
    SCHEMA_VERSION,
    SQLiteStore,
    SQLiteStoreError,
    _Filter,
    fts_match,
)
from audit_middleware.schema import Actor, Resource
from audit_middleware.sinks import JsonLinesSink
from tests.query.conftest import DAY, MINUTE, NOW_MS, make_event

FILTER_INDEXES = {
    "events_by_time": [],
    "events_by_action": ["action"],
    "events_by_resource_type": ["resource_type"],
    "events_by_user_id": ["user_id"],
    "events_by_user_email": ["user_email"],
    "events_by_effective_user_id": ["effective_user_id"],
    "events_by_effective_user_email": ["effective_user_email"],
    "events_by_project": ["project"],
    "events_by_outcome": ["outcome"],
}


def _connect(store: SQLiteStore) -> sqlite3.Connection:
    return sqlite3.connect(store.path)


# -- schema --------------------------------------------------------------------------------


def test_schema_is_versioned_and_in_wal_mode(sqlite_store: SQLiteStore) -> None:
    """A new file gets the current schema version and WAL journaling."""
    conn = _connect(sqlite_store)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_every_filter_index_leads_with_tenant_and_ends_newest_first(sqlite_store: SQLiteStore) -> None:
    """Each filter has an index (tenant, filter, unix_ms DESC, event_id DESC)."""
    conn = _connect(sqlite_store)
    for name, middle in FILTER_INDEXES.items():
        columns = [(row[2], row[3]) for row in conn.execute(f"PRAGMA index_xinfo({name})") if row[5]]
        assert [column for column, _ in columns] == ["tenant", *middle, "unix_ms", "event_id"], name
        assert [desc for _, desc in columns][-2:] == [1, 1], name


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
    sqlite_store: SQLiteStore, filters: dict[str, str], analyzed: bool
) -> None:
    """Every filter's first page walks a tenant index in order: no table scan, no sort of all matches.

    Also once ANALYZE has run (close() runs PRAGMA optimize), which changes SQLite's choices.
    """
    if analyzed:
        users = [Actor(id=f"u{n}", email=f"user{n}@example.com") for n in range(20)]
        sqlite_store.write(
            make_event(
                action, ago_ms=n * MINUTE, user=users[n % 20], resource=Resource("pod", str(n), f"web-{n}")
            )
            for n, action in enumerate(["create", "delete", "start", "login"] * 150)
        )
        _connect(sqlite_store).execute("ANALYZE")
    where = _Filter.of(AuditQuery.build("acme", **filters))  # type: ignore[arg-type]
    assert where is not None
    order = "ORDER BY unix_ms DESC, event_id DESC"
    sql = f"EXPLAIN QUERY PLAN SELECT document FROM events WHERE {where.sql} {order}"
    plan = " | ".join(row[3] for row in _connect(sqlite_store).execute(sql, where.params))
    assert plan.startswith("SEARCH events USING INDEX events_by_"), plan
    assert "SCAN events " not in plan + " "
    assert "TEMP B-TREE" not in plan


def test_reopening_keeps_the_records(tmp_path: Path) -> None:
    """A second store on the same file sees what the first stored."""
    event = make_event("create")
    with SQLiteStore(tmp_path / "a.sqlite3") as first:
        first.write([event])
    with SQLiteStore(tmp_path / "a.sqlite3") as second:
        assert second.get("acme", event.id) is not None


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A file made by a newer version is not touched, with a message saying why."""
    path = tmp_path / "a.sqlite3"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SQLiteStoreError, match="newer audit-middleware"):
        SQLiteStore(path)


def test_another_database_is_refused(tmp_path: Path) -> None:
    """A SQLite file that is not an audit store is not written into."""
    path = tmp_path / "app.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(SQLiteStoreError, match="not an audit store"):
        SQLiteStore(path)
    assert sqlite3.connect(path).execute("SELECT name FROM sqlite_schema").fetchall() == [("users",)]


@pytest.mark.parametrize("path", [":memory:", "file::memory:?cache=shared"])
def test_in_memory_databases_are_refused(path: str) -> None:
    """Each thread opens its own connection, so an in-memory database cannot work."""
    with pytest.raises(SQLiteStoreError, match="file path"):
        SQLiteStore(path)


def test_an_unusable_path_is_a_clear_error(tmp_path: Path) -> None:
    """A path that cannot be created is an error naming it."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="file"):
        SQLiteStore(blocker / "audit.sqlite3")


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
def test_search_folds_accents(sqlite_store: SQLiteStore, text: str) -> None:
    """The tokenizer removes diacritics: "cafe" finds "Café Server"."""
    event = make_event("restart", resource=Resource("virtual_machine", "vm", "Café Server"))
    sqlite_store.write([event, make_event("create", resource=Resource("pod", "p", "Cabbage"))])
    found = sqlite_store.search(AuditQuery.build("acme", search=text)).events
    assert [e.id for e in found] == [event.id]


# -- the sink side -------------------------------------------------------------------------


def test_emit_then_flush_makes_events_searchable(sqlite_store: SQLiteStore) -> None:
    """emit() queues; flush() returns once the events are stored."""
    events = [make_event("create", ago_ms=index) for index in range(50)]
    for event in events:
        sqlite_store.emit(event)
    assert sqlite_store.flush(timeout=10)
    assert sqlite_store.count(AuditQuery(tenant="acme")) == 50
    assert sqlite_store.written == 50
    assert sqlite_store.undelivered == 0


def test_emit_returns_quickly(sqlite_store: SQLiteStore) -> None:
    """emit() does not wait for the disk: a burst is queued far faster than it is committed."""
    events = [make_event("create", ago_ms=index) for index in range(2000)]
    started = time.perf_counter()
    for event in events:
        sqlite_store.emit(event)
    queued = time.perf_counter() - started
    assert sqlite_store.flush(timeout=30)
    # generous bound, not a benchmark: 2000 synchronous commits would take far longer
    assert queued < 1.0


def test_replays_are_ignored(sqlite_store: SQLiteStore) -> None:
    """Storing an event twice (a replay) keeps one copy."""
    event = make_event("create")
    assert sqlite_store.write([event]) == 1
    assert sqlite_store.write([event]) == 0
    sqlite_store.emit(event)
    assert sqlite_store.flush(timeout=10)
    assert sqlite_store.count(AuditQuery(tenant="acme")) == 1


def test_the_same_id_in_two_tenants_is_two_records(sqlite_store: SQLiteStore) -> None:
    """Uniqueness is per tenant, so one tenant cannot suppress another's record."""
    mine = make_event("create", tenant="acme")
    theirs = make_event("create", tenant="globex")
    theirs.id = mine.id
    assert sqlite_store.write([mine, theirs]) == 2
    found = sqlite_store.get("globex", mine.id)
    assert found is not None
    assert found.tenant is not None
    assert found.tenant.id == "globex"


def test_many_threads_and_two_stores_on_one_file(tmp_path: Path) -> None:
    """Concurrent emitters, and two stores sharing a file (like two workers), lose nothing."""
    path = tmp_path / "shared.sqlite3"
    stores = [SQLiteStore(path), SQLiteStore(path)]

    def emit_many(store: SQLiteStore) -> None:
        for index in range(200):
            store.emit(make_event("create", ago_ms=index))

    threads = [threading.Thread(target=emit_many, args=(stores[n % 2],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close(timeout=30)
    with SQLiteStore(path) as reader:
        assert reader.count(AuditQuery(tenant="acme")) == 1600


def test_a_full_queue_makes_the_caller_write(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the writer cannot keep up, emit() stores the event itself rather than drop it."""
    event = make_event("create")
    sqlite_store.emit(make_event("create", ago_ms=1))  # starts the writer
    assert sqlite_store.flush(timeout=10)

    def full(item: object) -> None:
        raise queue.Full

    monkeypatch.setattr(sqlite_store._queue, "put_nowait", full)
    sqlite_store.emit(event)
    assert sqlite_store.get("acme", event.id) is not None
    assert sqlite_store.flush(timeout=1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_workers_start_over(sqlite_store: SQLiteStore) -> None:
    """A store made before fork (gunicorn --preload) works in each child: new pool, new writer."""
    sqlite_store.emit(make_event("create"))  # the parent's writer thread and pool exist
    assert sqlite_store.flush(timeout=10)
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            stored = False
            try:
                for index in range(50):
                    sqlite_store.emit(make_event("create", ago_ms=index))
                stored = sqlite_store.flush(timeout=10) and sqlite_store.written == 50
                sqlite_store.close(timeout=10)
            finally:
                os._exit(0 if stored else 1)
        children.append(pid)
    assert [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children] == [0, 0]
    assert sqlite_store.count(AuditQuery(tenant="acme")) == 101


def test_emit_after_close_still_stores(sqlite_store: SQLiteStore) -> None:
    """A late event (another thread, after shutdown) is written synchronously."""
    sqlite_store.close()
    event = make_event("create")
    sqlite_store.emit(event)
    assert sqlite_store.get("acme", event.id) is not None


def test_a_failing_disk_reports_records_on_stderr(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """If a batch cannot be stored even after retries, its records go to stderr, counted."""

    def broken(conn: sqlite3.Connection, rows: object) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite_store_module, "_WRITE_RETRIES", (0.0,))
    monkeypatch.setattr(SQLiteStore, "_insert", staticmethod(broken))
    event = make_event("create")
    sqlite_store.emit(event)
    assert sqlite_store.flush(timeout=10)
    assert sqlite_store.undelivered == 1
    err = capsys.readouterr().err
    assert "audit_middleware_undelivered" in err
    assert event.id in err
    assert "disk I/O error" in err


# -- iterate, tail, purge ------------------------------------------------------------------


def test_iterate_is_a_snapshot(sqlite_store: SQLiteStore) -> None:
    """Events stored while an export runs are not part of it."""
    sqlite_store.write([make_event("create", ago_ms=index * MINUTE) for index in range(2500)])
    events = sqlite_store.iterate(AuditQuery(tenant="acme"))
    first = next(events)
    sqlite_store.write([make_event("create", unix_ms=NOW_MS + 1), make_event("create", ago_ms=DAY)])
    assert 1 + sum(1 for _ in events) == 2500
    assert first.unix_ms == NOW_MS


def test_tail_starts_when_called(sqlite_store: SQLiteStore) -> None:
    """An event stored between tail() and the first next() is yielded, older ones are not."""
    sqlite_store.write([make_event("create", ago_ms=MINUTE)])
    stop = threading.Event()
    live = sqlite_store.tail(AuditQuery(tenant="acme"), poll_interval=0.05, stop=stop)
    late = make_event("create", ago_ms=DAY)  # arrives now, with an old timestamp (a replayed spool)
    sqlite_store.write([late])
    assert [event.id for event in next(live)] == [late.id]
    stop.set()
    assert list(live) == []


def test_tail_yields_large_arrivals_in_batches(sqlite_store: SQLiteStore) -> None:
    """More new events than a batch holds come as several batches, none lost."""
    stop = threading.Event()
    live = sqlite_store.tail(AuditQuery(tenant="acme"), poll_interval=0.05, stop=stop)
    sqlite_store.write([make_event("create", ago_ms=index) for index in range(2500)])
    sizes = [len(next(live)) for _ in range(3)]
    stop.set()
    assert sizes == [1000, 1000, 500]


def test_purge_deletes_old_records_in_chunks(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """purge_older_than removes every tenant's old records, also from the search index."""
    monkeypatch.setattr(sqlite_store_module, "_PURGE_CHUNK", 3)
    old = [
        make_event("create", tenant=tenant, ago_ms=100 * DAY, resource=Resource("pod", "p", "ancient"))
        for tenant in ("acme", "globex")
        for _ in range(5)
    ]
    recent = make_event("create", ago_ms=DAY, resource=Resource("pod", "p", "ancient"))
    sqlite_store.write([*old, recent])
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


# -- the default sink ----------------------------------------------------------------------


def test_default_sink_is_the_sqlite_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an OpenSearch URL, records go to the SQLite file at AUDIT_SQLITE_PATH."""
    monkeypatch.delenv("AUDIT_OPENSEARCH_URL", raising=False)
    monkeypatch.delenv("AUDIT_LOG_FILE", raising=False)
    monkeypatch.setenv("AUDIT_SQLITE_PATH", str(tmp_path / "default.sqlite3"))
    sink = audit_config.default_sink()
    try:
        assert isinstance(sink, SQLiteStore)
        assert sink.path == tmp_path / "default.sqlite3"
    finally:
        sink.close()


def test_default_sink_falls_back_to_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unwritable store location does not break the host app: stdout, with one warning."""
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.delenv("AUDIT_OPENSEARCH_URL", raising=False)
    monkeypatch.delenv("AUDIT_LOG_FILE", raising=False)
    monkeypatch.setenv("AUDIT_SQLITE_PATH", str(tmp_path / "file" / "audit.sqlite3"))
    with pytest.warns(RuntimeWarning, match="standard output") as warned:
        sink = audit_config.default_sink()
    assert isinstance(sink, JsonLinesSink)
    assert sink.path is None
    assert len(warned) == 1


def test_default_sink_with_a_log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AUDIT_LOG_FILE still selects the JSON-lines file."""
    monkeypatch.delenv("AUDIT_OPENSEARCH_URL", raising=False)
    monkeypatch.setenv("AUDIT_LOG_FILE", str(tmp_path / "audit.jsonl"))
    sink = audit_config.default_sink()
    try:
        assert isinstance(sink, JsonLinesSink)
        assert sink.path == tmp_path / "audit.jsonl"
    finally:
        sink.close()


def test_default_sink_with_opensearch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """AUDIT_OPENSEARCH_URL selects the OpenSearch sink."""
    monkeypatch.setenv("AUDIT_OPENSEARCH_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AUDIT_SPOOL_DIR", str(tmp_path / "spool"))
    sink = audit_config.default_sink()
    try:
        assert isinstance(sink, OpenSearchSink)
    finally:
        sink.close(timeout=1)


def test_recorded_events_reach_the_default_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """record() with the default configuration ends up searchable in the SQLite file."""
    monkeypatch.delenv("AUDIT_OPENSEARCH_URL", raising=False)
    monkeypatch.delenv("AUDIT_LOG_FILE", raising=False)
    monkeypatch.setenv("AUDIT_SQLITE_PATH", str(tmp_path / "default.sqlite3"))
    audit_config.use_config(None)  # the autouse fixture restores its own afterwards
    event = record("restart", resource=Resource("pod", "p", "web-9"), tenant="acme", actor=Actor(id="u1"))
    sink = audit_config.get_config().sink
    assert isinstance(sink, SQLiteStore)
    assert sink.flush(timeout=10)
    found = sink.search(AuditQuery.build("acme", search="web-9")).events
    assert [e.id for e in found] == [event.id]
