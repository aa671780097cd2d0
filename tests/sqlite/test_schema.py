"""The SQLite layout: schema version, WAL, the filter indexes, refusing what is not an audit store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from audit_middleware.model.event import Actor
from audit_middleware.query.sqlite_store import SQLiteStore, SQLiteStoreError
from audit_middleware.sinks.sqlite import SQLiteSink
from audit_middleware.sqlite import schema
from audit_middleware.sqlite.migrations import SCHEMA_VERSION
from audit_middleware.sqlite.schema import email_key, id_key, insert_rows, row_of
from tests.query.conftest import make_event


def _connect(target: SQLiteStore | SQLiteSink) -> sqlite3.Connection:
    return sqlite3.connect(target.path)


# -- schema --------------------------------------------------------------------------------


def test_schema_is_versioned_and_in_wal_mode(sqlite_store: SQLiteStore) -> None:
    """A new file gets the current schema version and WAL journaling."""
    conn = _connect(sqlite_store)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_one_time_index_leads_with_tenant_and_covers_the_common_filters(sqlite_store: SQLiteStore) -> None:
    """events_by_time is (tenant, unix_ms DESC, event_id DESC) and carries action, type, outcome, project."""
    conn = _connect(sqlite_store)
    columns = [(row[2], row[3]) for row in conn.execute("PRAGMA index_xinfo(events_by_time)") if row[5]]
    assert columns == [
        ("tenant", 0),
        ("unix_ms", 1),
        ("event_id", 1),
        ("action", 0),
        ("resource_type", 0),
        ("outcome", 0),
        ("project", 0),
    ]
    indexes = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL AND tbl_name = 'events'"
        )
    }
    # every other b-tree index costs the writer (docs/architecture.md); verify reads a chain in order
    assert indexes == {"events_by_time", "events_by_chain"}


def test_user_keys_hold_one_token_per_user_value(sqlite_store: SQLiteStore, sqlite_sink: SQLiteSink) -> None:
    """user_keys: the id and the ASCII-lowercased email of the actor and of the identity acted as."""
    actor = Actor(id="7", email="Ann@Example.COM", impersonator=Actor(id="root", email="ROOT@x"))
    sqlite_sink.write([make_event("create", user=actor)])
    keys = _connect(sqlite_store).execute("SELECT user_keys FROM events").fetchone()[0]
    assert keys.lower().split() == [
        id_key("root"),
        email_key("root@x"),
        id_key("7"),
        email_key("ann@example.com"),
    ]  # FTS5 folds case


def test_inserted_rows_add_their_actions_and_duplicates_add_none(tmp_path: Path) -> None:
    """``actions`` holds the id and label of every stored row: a batch of new rows adds its own
    pairs, a batch with rows stored already adds only the pairs of the rows it stored."""
    with SQLiteSink(tmp_path / "a.sqlite3", install_signal_handlers=False) as sink:
        path = sink.path
    stored = [row_of(make_event("create", ago_ms=1)), row_of(make_event("delete", ago_ms=2))]
    replay = list(stored[0])
    replay[3:5] = ["renamed", "Renamed"]  # a replayed id is ignored, and so is its action
    fresh = row_of(make_event("login", ago_ms=3))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for batch in (stored, [tuple(replay), fresh]):
            conn.execute("BEGIN IMMEDIATE")
            insert_rows(conn, iter(batch))
            conn.execute("COMMIT")
        actions = set(conn.execute("SELECT id, label FROM actions").fetchall())
        in_rows = set(conn.execute("SELECT DISTINCT action, action_label FROM events").fetchall())
    finally:
        conn.close()
    assert actions == in_rows
    assert len(actions) == 3


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


@pytest.mark.parametrize("count", [1, 9, 1000, 1311])
@pytest.mark.parametrize("variables", [None, 999])
def test_a_batch_goes_in_whole_and_in_order_through_multi_row_statements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int, variables: int | None
) -> None:
    """Every row of a batch is stored once, in the batch's order, whatever its size and however
    few variables the SQLite build allows a statement; a row stored already is skipped."""
    if variables is not None:  # a build with SQLite's old default limit (and Python 3.10)
        monkeypatch.setattr(schema, "_variables_allowed", lambda conn: variables)
    with SQLiteSink(tmp_path / "a.sqlite3", install_signal_handlers=False) as sink:
        path = sink.path
    rows = [row_of(make_event("create", unix_ms=1_700_000_000_000 + n)) for n in range(count)]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        assert insert_rows(conn, rows) == count
        assert insert_rows(conn, [rows[0], *rows[: count // 2]]) == 0  # replays, none stored twice
        conn.execute("COMMIT")
        stored = [event_id for (event_id,) in conn.execute("SELECT event_id FROM events ORDER BY seq")]
    finally:
        conn.close()
    assert stored == [row[2] for row in rows]
