"""Opening the audit store while others do: schema creation and WAL wait like any lock."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from audit_middleware.query.model import AuditQuery
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.sinks.sqlite import SQLiteSink
from audit_middleware.sqlite import schema
from tests.query.conftest import make_event


def _hold_a_read_lock(path: Path, seconds: float) -> threading.Thread:
    """Another process's reader on the new, empty file: WAL cannot be switched on while it reads."""
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    released = threading.Timer(seconds, lambda: (reader.rollback(), reader.close()))
    released.start()
    return released


def test_a_briefly_busy_new_store_is_waited_for(tmp_path: Path) -> None:
    """A store held busy past busy_timeout while it is created does not fail: the sink opens,
    queues, and stores every record once the lock is gone (never a fallback for good)."""
    path = tmp_path / "audit.sqlite3"
    held = _hold_a_read_lock(path, 1.0)
    sink = SQLiteSink(path, busy_timeout=0.2)
    try:
        events = [make_event("create", ago_ms=n) for n in range(20)]
        for event in events:
            sink.emit(event)
        assert sink.flush(timeout=15)
        held.join()
        assert sink.undelivered == 0
        with SQLiteStore(path) as store:
            assert store.count(AuditQuery(tenant="acme")) == 20
    finally:
        sink.close()


def test_the_store_reader_waits_too(tmp_path: Path) -> None:
    """SQLiteStore on a store that is briefly locked past busy_timeout opens once it is free."""
    path = tmp_path / "audit.sqlite3"
    held = _hold_a_read_lock(path, 0.5)
    with SQLiteStore(path, busy_timeout=0.1) as store:
        assert store.count(AuditQuery(tenant="acme")) == 0
    held.join()


def test_a_schema_created_meanwhile_is_not_taken_for_a_foreign_database(tmp_path: Path) -> None:
    """Another process creating the schema between two reads of this one does not make the
    new store look like 'a SQLite database, but not an audit store'."""
    path = tmp_path / "audit.sqlite3"
    creator = sqlite3.connect(path, isolation_level=None)
    conn = sqlite3.connect(path, isolation_level=None, timeout=5)

    class Interleaved:
        """A connection on which the other process finishes creating the schema after the first read."""

        calls = 0

        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            cursor = conn.execute(sql, *args)
            Interleaved.calls += 1
            if Interleaved.calls == 1:
                rows = cursor.fetchall()
                schema.ensure_schema(creator, path)
                return _Rows(rows)  # type: ignore[return-value]
            return cursor

    schema.ensure_schema(Interleaved(), path)  # type: ignore[arg-type]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION


class _Rows:
    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def fetchone(self) -> Any:
        return self._rows[0]


def test_many_processes_create_one_store(tmp_path: Path) -> None:
    """Processes started together on one new file all open it (spawned, as uvicorn --workers does)."""
    import multiprocessing  # noqa: PLC0415 - only this test starts processes

    context = multiprocessing.get_context("spawn")
    path = tmp_path / "audit.sqlite3"
    barrier = context.Barrier(6)
    results = context.Queue()
    workers = [context.Process(target=_open_store, args=(str(path), barrier, results)) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert sorted(results.get(timeout=5) for _ in workers) == ["ok"] * 6


def _open_store(path: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        sink = SQLiteSink(path)
        sink.write([make_event("create")])
        sink.close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(f"{type(exc).__name__}: {exc}")
