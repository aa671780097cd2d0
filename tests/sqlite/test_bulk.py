"""The bulk load: into an empty store the indexes come after the rows, in one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from audit_middleware.model.encoding import dumps
from audit_middleware.model.event import Actor, Resource
from audit_middleware.query.model import AuditQuery
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.sinks.sqlite import SQLiteSink
from audit_middleware.sqlite.bulk import import_lines, load_rows
from audit_middleware.sqlite.connection import ConnectionPool
from audit_middleware.sqlite.schema import insert_only, row_of
from tests.query.conftest import MINUTE, make_event


def _events(count: int, start: int = 0) -> list[Any]:
    users = [Actor(id=f"u{n}", email=f"User{n}@Example.com") for n in range(7)]
    return [
        make_event(
            ("create", "delete", "login_failed")[n % 3],
            ago_ms=n * MINUTE,
            user=users[n % 7],
            resource=Resource("pod", str(n), f"web-{n}"),
        )
        for n in range(start, start + count)
    ]


def _answers(path: Path) -> list[list[str]]:
    """What a set of searches finds, to compare two stores."""
    queries = [
        AuditQuery.build("acme", page_size=500),
        AuditQuery.build("acme", user="user3@example.com", page_size=500),
        AuditQuery.build("acme", user="u4", page_size=500),
        AuditQuery.build("acme", search="web-1", page_size=500),
        AuditQuery.build("acme", search="login f", page_size=500),
        AuditQuery.build("acme", action="delete", page_size=500),
    ]
    with SQLiteStore(path) as store:
        return [[event.id for event in store.search(query).events] for query in queries]


def _integrity(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO events_fts (events_fts) VALUES ('integrity-check')")
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_bulk_load_finds_what_record_by_record_writes_find(tmp_path: Path) -> None:
    """Loading into an empty store builds the index, FTS5 and actions: every filter answers alike."""
    events = _events(300)
    with SQLiteSink(tmp_path / "bulk.sqlite3", install_signal_handlers=False) as bulk:
        assert bulk.load(events) == 300
    with SQLiteSink(tmp_path / "rows.sqlite3", install_signal_handlers=False) as rows:
        assert rows.write(events) == 300
    assert _answers(tmp_path / "bulk.sqlite3") == _answers(tmp_path / "rows.sqlite3")
    assert all(_answers(tmp_path / "bulk.sqlite3"))  # every query found something
    _integrity(tmp_path / "bulk.sqlite3")
    with sqlite3.connect(tmp_path / "bulk.sqlite3") as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")}
    assert "events_by_time" in names  # built again after the rows


def test_a_load_into_a_store_with_records_adds_them_and_skips_duplicates(tmp_path: Path) -> None:
    """A store that holds records takes the load in ordinary transactions; replays are skipped."""
    path = tmp_path / "a.sqlite3"
    first, second = _events(100), _events(150, start=100)
    with SQLiteSink(path, install_signal_handlers=False) as sink:
        assert sink.load(first) == 100
        assert sink.load([*first[:10], *second]) == 150
    _integrity(path)
    with SQLiteStore(path) as store:
        assert store.count(AuditQuery.build("acme")) == 250
        assert store.count(AuditQuery.build("acme", search="web-120")) == 1


def test_a_failed_load_into_an_empty_store_leaves_it_empty_and_indexed(tmp_path: Path) -> None:
    """The bulk path is one transaction: a failure half-way rolls everything back, indexes included."""
    path = tmp_path / "a.sqlite3"
    pool = ConnectionPool(path, busy_timeout=5.0, synchronous="NORMAL")

    def rows() -> Iterator[tuple[Any, ...]]:
        for number, event in enumerate(_events(50)):
            if number == 30:
                raise OSError("the source broke")
            yield row_of(event)

    with pool.borrow() as conn, pytest.raises(OSError, match="the source broke"):
        load_rows(conn, rows())
    pool.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
        assert conn.execute("SELECT name FROM sqlite_schema WHERE name = 'events_by_time'").fetchone()
    with SQLiteSink(path, install_signal_handlers=False) as sink:  # the store works as before
        assert sink.write(_events(5)) == 5
    _integrity(path)


def test_import_lines_counts_what_it_stored_skipped_and_refused(tmp_path: Path) -> None:
    """import_lines reports lines read, records stored, duplicates and refused lines with reasons."""
    documents = [dumps(event.to_document()).decode() for event in _events(4)]
    pool = ConnectionPool(tmp_path / "a.sqlite3", busy_timeout=5.0, synchronous="NORMAL")
    with pool.borrow() as conn:
        report = import_lines(conn, [*documents, documents[0], "{", "", '{"event": {"id": 1}}'])
    pool.close()
    assert (report.read, report.inserted, report.duplicates, report.rejected) == (7, 4, 1, 2)
    assert [example.split(":")[0] for example in report.examples] == ["line 6", "line 8"]


def test_a_bulk_load_keeps_the_chain_index_up_and_builds_the_others(tmp_path: Path) -> None:
    """The chain index is kept up row by row (its key grows with the chain), the read index is
    built after the rows; the file ends with the same layout, and verify reads the chain in order."""
    path = tmp_path / "bulk.sqlite3"
    with SQLiteSink(path, install_signal_handlers=False) as sink:
        statements: list[str] = []
        with sink._pool.borrow() as conn:
            conn.set_trace_callback(statements.append)
            try:
                chained = partial(sink.chain.insert, store=insert_only)  # as SQLiteSink.load
                assert load_rows(conn, [row_of(event) for event in _events(50)], load=chained) == 50
            finally:
                conn.set_trace_callback(None)
    dropped = {statement.split()[-1] for statement in statements if statement.startswith("DROP INDEX")}
    assert dropped == {"events_by_time"}
    with sqlite3.connect(path) as conn:
        indexes = {name for (name,) in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")}
        assert {"events_by_time", "events_by_chain"} <= indexes
        order = conn.execute(
            "SELECT chain_seq FROM events INDEXED BY events_by_chain WHERE chain_id IS NOT NULL "
            "ORDER BY chain_id, chain_seq"
        ).fetchall()
    assert [seq for (seq,) in order] == list(range(1, 51))
    _integrity(path)
