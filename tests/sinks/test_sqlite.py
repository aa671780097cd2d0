"""The SQLite sink: a background writer that never drops a record, across threads, processes and forks."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest

from audit_middleware.model.event import Actor, Resource
from audit_middleware.query.model import AuditQuery
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.sinks import base
from audit_middleware.sinks import sqlite as sqlite_sink_module
from audit_middleware.sinks.sqlite import SQLiteSink
from tests.query.conftest import make_event


def _connect(target: SQLiteStore | SQLiteSink) -> sqlite3.Connection:
    return sqlite3.connect(target.path)


def test_emit_then_flush_makes_events_searchable(sqlite_sink: SQLiteSink, sqlite_store: SQLiteStore) -> None:
    """emit() queues; flush() returns once the events are stored."""
    events = [make_event("create", ago_ms=index) for index in range(50)]
    for event in events:
        sqlite_sink.emit(event)
    assert sqlite_sink.flush(timeout=10)
    assert sqlite_store.count(AuditQuery(tenant="acme")) == 50
    assert sqlite_sink.written == 50
    assert sqlite_sink.undelivered == 0


def test_emit_returns_quickly(sqlite_sink: SQLiteSink) -> None:
    """emit() does not wait for the disk: a burst is queued far faster than it is committed."""
    events = [make_event("create", ago_ms=index) for index in range(2000)]
    started = time.perf_counter()
    for event in events:
        sqlite_sink.emit(event)
    queued = time.perf_counter() - started
    assert sqlite_sink.flush(timeout=30)
    # generous bound, not a benchmark: 2000 synchronous commits would take far longer
    assert queued < 1.0


def test_replays_are_ignored(sqlite_sink: SQLiteSink, sqlite_store: SQLiteStore) -> None:
    """Storing an event twice (a replay) keeps one copy."""
    event = make_event("create")
    assert sqlite_sink.write([event]) == 1
    assert sqlite_sink.write([event]) == 0
    sqlite_sink.emit(event)
    assert sqlite_sink.flush(timeout=10)
    assert sqlite_store.count(AuditQuery(tenant="acme")) == 1


def test_the_same_id_in_two_tenants_is_two_records(
    sqlite_sink: SQLiteSink, sqlite_store: SQLiteStore
) -> None:
    """Uniqueness is per tenant, so one tenant cannot suppress another's record."""
    mine = make_event("create", tenant="acme")
    theirs = make_event("create", tenant="globex")
    theirs.id = mine.id
    assert sqlite_sink.write([mine, theirs]) == 2
    found = sqlite_store.get("globex", mine.id)
    assert found is not None
    assert found.tenant is not None
    assert found.tenant.id == "globex"


def test_text_with_lone_surrogates_is_stored_not_lost(
    sqlite_sink: SQLiteSink, sqlite_store: SQLiteStore
) -> None:
    """A lone surrogate (bad UTF-8 decoded by an app) costs neither its record nor its batch."""
    odd = make_event(
        "create", resource=Resource("pod", "p\udc80", "name\ud800"), user=Actor(email="a\udcff@x")
    )
    batch = [make_event("create", ago_ms=index + 1) for index in range(5)]
    for event in [odd, *batch]:
        sqlite_sink.emit(event)
    assert sqlite_sink.flush(timeout=10)
    assert sqlite_sink.undelivered == 0
    assert sqlite_store.count(AuditQuery(tenant="acme")) == 6
    stored = sqlite_store.get("acme", odd.id)
    assert stored is not None
    assert stored.resource == Resource("pod", "p\ufffd", "name\ufffd")


def test_many_threads_and_two_sinks_on_one_file(tmp_path: Path) -> None:
    """Concurrent emitters, and two sinks sharing a file (like two workers), lose nothing."""
    path = tmp_path / "shared.sqlite3"
    stores = [SQLiteSink(path), SQLiteSink(path)]

    def emit_many(store: SQLiteSink) -> None:
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


def test_a_full_queue_makes_the_caller_write(tmp_path: Path, sqlite_store: SQLiteStore) -> None:
    """When the writer cannot keep up, emit() stores the event itself rather than drop it."""
    sink = SQLiteSink(tmp_path / "audit.sqlite3", queue_size=1)
    blocked = threading.Event()
    original = sink._store_batch

    def slow(batch: list[object]) -> None:
        blocked.wait(10)
        original(batch)  # type: ignore[arg-type]

    sink._store_batch = slow  # type: ignore[method-assign]
    first, second, third = (make_event("create", ago_ms=n) for n in range(3))
    sink.emit(first)  # taken by the writer, which now waits
    deadline = time.monotonic() + 5
    while sink._writer.depth() and time.monotonic() < deadline:
        time.sleep(0.01)
    sink.emit(second)  # fills the queue of one
    sink.emit(third)  # no room: written by the caller, at once
    assert sqlite_store.get("acme", third.id) is not None
    assert sqlite_store.get("acme", first.id) is None
    blocked.set()
    assert sink.flush(timeout=10)
    assert sqlite_store.count(AuditQuery(tenant="acme")) == 3
    sink.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_workers_start_over(sqlite_sink: SQLiteSink, sqlite_store: SQLiteStore) -> None:
    """A sink made before fork (gunicorn --preload) works in each child: new pool, new writer."""
    sqlite_sink.emit(make_event("create"))  # the parent's writer thread and pool exist
    assert sqlite_sink.flush(timeout=10)
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            stored = False
            try:
                for index in range(50):
                    sqlite_sink.emit(make_event("create", ago_ms=index))
                stored = sqlite_sink.flush(timeout=10) and sqlite_sink.written == 51
                sqlite_sink.close(timeout=10)
            finally:
                os._exit(0 if stored else 1)
        children.append(pid)
    assert [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children] == [0, 0]
    assert sqlite_store.count(AuditQuery(tenant="acme")) == 101


def test_emit_after_close_still_stores(sqlite_sink: SQLiteSink, sqlite_store: SQLiteStore) -> None:
    """A late event (another thread, after shutdown) is written synchronously."""
    sqlite_sink.close()
    event = make_event("create")
    sqlite_sink.emit(event)
    assert sqlite_store.get("acme", event.id) is not None


def test_a_failing_disk_keeps_records_privately_and_replays_them(
    sqlite_sink: SQLiteSink,
    sqlite_store: SQLiteStore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A batch the store refuses goes to a private file (0600 in 0700), not to stderr; it is
    counted, warned once, and replayed into the store when a later batch succeeds."""
    warnings: list[str] = []
    monkeypatch.setattr("audit_middleware.logs.warn", lambda message, **fields: warnings.append(message))
    original = sqlite_sink_module._write_transaction

    def broken(conn: sqlite3.Connection, rows: object) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(sqlite_sink_module, "_WRITE_RETRIES", (0.0,))
    monkeypatch.setattr(sqlite_sink_module, "_write_transaction", broken)
    refused = [make_event("create", ago_ms=index, user=Actor(email="ann@example.com")) for index in range(3)]
    for event in refused:
        sqlite_sink.emit(event)
        assert sqlite_sink.flush(timeout=10)
    assert sqlite_sink.undelivered == 3
    assert capsys.readouterr().err == ""  # no record, no personal data, on stderr
    directory = sqlite_sink.fallback.directory
    (kept,) = directory.iterdir()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert all(event.id in kept.read_text() for event in refused)
    assert len(warnings) == 1
    assert sqlite_sink.fallback.stats().kept == 3

    monkeypatch.setattr(sqlite_sink_module, "_write_transaction", original)  # the disk has room again
    sqlite_sink.emit(make_event("update"))
    assert sqlite_sink.flush(timeout=10)
    assert sqlite_store.count(AuditQuery(tenant="acme")) == 4
    assert sqlite_sink.fallback.stats().replayed == 3


def test_persist_stops_the_housekeeping_and_writes_through(tmp_path: Path, sqlite_store: SQLiteStore) -> None:
    """When the process is ending (persist: a signal, a server hook), the alert and retention thread stops
    after its job, and records that still arrive are written at once."""
    from audit_middleware.model.alerts import default_rules  # noqa: PLC0415 - only this test needs them

    sink = SQLiteSink(tmp_path / "audit.sqlite3", alert_rules=default_rules(), alert_interval=0.05)
    try:
        sink.emit(make_event("create"))
        thread = sink.housekeeping._thread
        assert thread is not None
        assert thread.is_alive()
        assert sink.persist(timeout=5)
        assert not thread.is_alive()
        late = make_event("update")
        sink.emit(late)
        assert sqlite_store.get("acme", late.id) is not None, "written through, not queued"
    finally:
        sink.close()


def test_a_delivery_batch_reaches_the_writer_in_one_hand_over(
    tmp_path: Path, sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events emitted in the delivery worker's batch are handed to the writer when it ends, in
    one offer; what finds the queue full is stored by the caller; a flush mid-batch lets none wait."""
    sink = SQLiteSink(tmp_path / "audit.sqlite3", queue_size=2)
    offers: list[int] = []
    original = sink._writer.offer_many

    def counted(items: list[object]) -> int:
        offers.append(len(items))
        return original(items)  # type: ignore[arg-type]

    monkeypatch.setattr(sink._writer, "offer_many", counted)
    events = [make_event("create", ago_ms=n) for n in range(5)]
    base.begin_batch()
    for event in events[:4]:
        sink.emit(event)
    assert offers == []
    assert base.end_batch() == []
    assert offers == [4]  # two queued, two written by the caller
    base.begin_batch()
    sink.emit(events[4])
    assert sink.flush(timeout=10)
    assert base.end_batch() == []
    assert sqlite_store.count(AuditQuery(tenant="acme")) == 5
    sink.close()
