"""The SQLite layout: schema version, WAL, the filter indexes, refusing what is not an audit store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from audit_middleware.query.sqlite_store import SQLiteStore, SQLiteStoreError
from audit_middleware.sinks.sqlite import SQLiteSink
from audit_middleware.sqlite.migrations import SCHEMA_VERSION


def _connect(target: SQLiteStore | SQLiteSink) -> sqlite3.Connection:
    return sqlite3.connect(target.path)


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
