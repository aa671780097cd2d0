"""The per-thread connection pool: one connection per borrowing thread, reused, reset by fork, pragmas
set; and opening a store while others do, where schema creation and WAL wait like any lock."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audit_middleware.query.model import AuditQuery
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.sinks.sqlite import SQLiteSink
from audit_middleware.sqlite import migrations
from audit_middleware.sqlite.connection import ConnectionPool
from audit_middleware.sqlite.migrations import SCHEMA_VERSION
from audit_middleware.sqlite.schema import SQLiteStoreError
from tests.fork_support import in_forked_child
from tests.query.conftest import make_event

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


def is_closed(conn: sqlite3.Connection) -> bool:
    """Whether the connection was closed."""
    try:
        conn.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[ConnectionPool]:
    """A pool on a new file in a folder that does not exist yet, closed at the end."""
    made = ConnectionPool(tmp_path / "db" / "audit.sqlite3", busy_timeout=2.5, synchronous="NORMAL")
    yield made
    made.close()


def test_a_new_file_gets_the_schema(tmp_path: Path) -> None:
    """Opening a pool on a new path creates its folder and the current schema."""
    path = tmp_path / "new" / "audit.sqlite3"
    ConnectionPool(path, busy_timeout=1, synchronous="FULL").close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@pytest.mark.parametrize("path", [":memory:", "file:audit?mode=memory", "file:audit.sqlite3"])
def test_in_memory_and_uri_paths_are_refused(path: str) -> None:
    """Every thread opens its own connection, so a path that is not a file is refused."""
    with pytest.raises(SQLiteStoreError, match="needs a file path"):
        ConnectionPool(path, busy_timeout=1, synchronous="FULL")


def test_pragmas_are_applied(pool: ConnectionPool) -> None:
    """Each connection has the busy timeout, synchronous level and memory temp store; autocommit."""
    with pool.borrow() as conn:
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 2500
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.isolation_level is None


def test_full_synchronous_is_applied(tmp_path: Path) -> None:
    """synchronous='FULL' reaches SQLite."""
    full = ConnectionPool(tmp_path / "full.sqlite3", busy_timeout=1, synchronous="FULL")
    try:
        with full.borrow() as conn:
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    finally:
        full.close()


def test_a_thread_reuses_the_connection_it_returned(pool: ConnectionPool) -> None:
    """Borrowing again after returning gets the same connection, not a new one."""
    with pool.borrow() as first:
        pass
    with pool.borrow() as second:
        assert second is first


def test_threads_borrowing_at_once_get_their_own_connections(pool: ConnectionPool) -> None:
    """Four threads holding a connection at the same time hold four different ones."""
    together = threading.Barrier(4)
    held: list[sqlite3.Connection] = []
    lock = threading.Lock()

    def borrow() -> None:
        with pool.borrow() as conn:
            with lock:
                held.append(conn)
            conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
            together.wait(5)

    threads = [threading.Thread(target=borrow) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(held) == 4
    assert len({id(conn) for conn in held}) == 4


def test_a_nested_borrow_gets_another_connection(pool: ConnectionPool) -> None:
    """A connection is never lent twice at once, even to the same thread."""
    with pool.borrow() as outer, pool.borrow() as inner:
        assert inner is not outer


def test_at_most_four_idle_connections_are_kept(pool: ConnectionPool) -> None:
    """Connections returned beyond four idle ones are closed rather than kept."""
    with pool.borrow() as a, pool.borrow() as b, pool.borrow() as c, pool.borrow() as d, pool.borrow() as e:
        connections = [a, b, c, d, e]
    assert [is_closed(conn) for conn in connections].count(True) == 1
    assert len(pool._idle) == 4


def test_an_open_transaction_is_rolled_back_on_return(pool: ConnectionPool) -> None:
    """A borrower that leaves a transaction open (an exception midway) does not leak it to the next."""

    def fail_midway() -> None:
        with pool.borrow() as conn:
            conn.execute("BEGIN")
            conn.execute("CREATE TABLE scratch (x)")
            raise RuntimeError("midway")

    with pytest.raises(RuntimeError):
        fail_midway()
    with pool.borrow() as again:
        assert not again.in_transaction
        assert again.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'scratch'").fetchone()[0] == 0


def test_close_closes_the_idle_connections(pool: ConnectionPool) -> None:
    """After close() the idle connections are closed; a later borrow opens a fresh one."""
    with pool.borrow() as conn:
        pass
    pool.close(optimize=True)
    assert is_closed(conn)
    with pool.borrow() as fresh:
        assert fresh is not conn
        assert fresh.execute("SELECT 1").fetchone() == (1,)


def test_a_file_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    """A path that SQLite cannot open (a directory) is reported as a SQLiteStoreError naming it."""
    directory = tmp_path / "a-directory"
    directory.mkdir()
    with pytest.raises(SQLiteStoreError, match="cannot open the audit store"):
        ConnectionPool(directory, busy_timeout=1, synchronous="FULL")


@needs_fork
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_starts_with_an_empty_pool(pool: ConnectionPool) -> None:
    """In a child the parent's idle connections are neither used nor closed; the child opens its own."""
    with pool.borrow() as parents:
        pass
    parent_id = id(parents)

    def child() -> str:
        with pool.borrow() as childs:
            usable = childs.execute("SELECT 1").fetchone() == (1,)
        return f"{id(childs) != parent_id and usable} {len(pool._idle)}"

    assert in_forked_child(child) == "True 1"
    with pool.borrow() as again:
        assert again is parents, "the parent's pool is untouched by the child"
        assert again.execute("SELECT 1").fetchone() == (1,)


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
                migrations.ensure_schema(creator, path)
                return _Rows(rows)  # type: ignore[return-value]
            return cursor

    migrations.ensure_schema(Interleaved(), path)  # type: ignore[arg-type]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


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
