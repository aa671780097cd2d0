"""Loading many records at once: into an empty store, the indexes are built after the rows.

Maintaining ``events_by_time`` and ``events_fts`` row by row costs most of an insert
(see "The SQLite layout" in ``docs/architecture.md``); building them once over the
loaded rows costs a fraction of that. So ``load_rows`` into a store without records:

* takes the write lock (``BEGIN IMMEDIATE``) for the whole load, so no other writer can
  add a row while the full-text triggers are off (they wait, then spool, and replay);
* drops the read indexes, inserts every row, builds the indexes, and builds
  ``events_fts`` and ``actions`` from the rows, all in that one transaction: a failed
  load leaves the file as it was.

Into a store that holds records already, rows go in by the ordinary path
(``schema.insert_rows``), one transaction per ``BATCH`` rows. Readers (WAL) see the old
contents until the load commits.

``import_lines`` reads NDJSON documents (an export, a retention archive, another store's
dump) and stores each document as it is, byte for byte.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from audit_middleware.model.encoding import loads
from audit_middleware.sqlite.schema import insert_only, insert_rows, row_of_document

__all__ = ["BATCH", "ImportReport", "import_lines", "load_rows"]

BATCH = 1000
"""Rows per transaction when loading into a store that holds records already."""
_CHUNK = 20_000  # rows per executemany inside the one bulk transaction
_REJECTS_KEPT = 20
KEPT_INDEXES = frozenset({"events_by_chain"})
"""Indexes a load keeps up as it inserts, rather than drop and build after the rows.

``events_by_chain``'s key is read from each document (``json_extract``): building it
after the rows parses every stored document again and sorts the keys, while keeping it
up costs the insert little, since a chain's rows arrive in order and each entry goes to
the end of the index."""


Row = Any  # a ``schema.row_of`` tuple, or whatever the caller's ``insert`` and ``load`` take
Store = Callable[[sqlite3.Connection, Sequence[Row]], int]


def load_rows(
    conn: sqlite3.Connection,
    rows: Iterable[Row],
    *,
    insert: Store = insert_rows,
    load: Store = insert_only,
) -> int:
    """Store ``rows`` (``schema.row_of``); returns how many were new (duplicates are skipped).

    ``conn`` is in autocommit mode (``isolation_level=None``), as the pool's are. The
    writer's per-batch work (the hash chain) comes in two hooks: ``insert`` stores each
    batch of a store that has rows, inside its transaction (indexing it for search, as
    ``schema.insert_rows`` does); ``load`` stores each chunk of a load into an empty
    store, inside that load's one transaction, without the search index, which is built
    after the rows (as ``schema.insert_only``).
    """
    source = iter(rows)
    conn.execute("BEGIN IMMEDIATE")
    try:
        empty = conn.execute("SELECT 1 FROM events LIMIT 1").fetchone() is None
        if empty:
            inserted = _load_then_index(conn, source, load)
            conn.execute("COMMIT")
            return inserted
        conn.execute("COMMIT")
    except BaseException:
        conn.rollback()
        raise
    return _load_in_batches(conn, source, insert)


def _load_then_index(conn: sqlite3.Connection, rows: Iterator[Row], load: Store) -> int:
    """Inside the caller's transaction: drop, insert, build (see the module docstring)."""
    indexes = [
        (str(name), str(sql))
        for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'events' "
            "AND sql IS NOT NULL"  # the UNIQUE constraint's index stays: it skips duplicates
        )
        if name not in KEPT_INDEXES
    ]
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    conn.execute("INSERT INTO events_fts (events_fts) VALUES ('delete-all')")
    inserted = 0
    while chunk := list(islice(rows, _CHUNK)):
        inserted += load(conn, chunk)
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("INSERT INTO events_fts (events_fts) VALUES ('rebuild')")
    conn.execute("INSERT OR IGNORE INTO actions (id, label) SELECT DISTINCT action, action_label FROM events")
    return inserted


def _load_in_batches(conn: sqlite3.Connection, rows: Iterator[Row], insert: Store) -> int:
    inserted = 0
    while batch := list(islice(rows, BATCH)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            inserted += insert(conn, batch)
        except BaseException:
            conn.rollback()
            raise
        conn.execute("COMMIT")
    return inserted


@dataclass
class ImportReport:
    """What ``import_lines`` did: lines read, records stored, duplicates, and refused lines."""

    read: int = 0
    inserted: int = 0
    rejected: int = 0
    examples: list[str] = field(default_factory=list)
    """The first refused lines' numbers and reasons."""

    @property
    def duplicates(self) -> int:
        """Records the store held already (same tenant and id)."""
        return self.read - self.rejected - self.inserted


def import_lines(conn: sqlite3.Connection, lines: Iterable[str]) -> ImportReport:
    """Store every NDJSON document of ``lines``; a line that is not an audit record is refused.

    Blank lines are skipped. The report says how many were read, stored and refused.
    """
    report = ImportReport()

    def rows() -> Iterator[tuple[Any, ...]]:
        for number, line in enumerate(lines, 1):
            text = line.strip()
            if not text:
                continue
            report.read += 1
            try:
                yield row_of_document(_object(loads(text)), text)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                report.rejected += 1
                if len(report.examples) < _REJECTS_KEPT:
                    report.examples.append(f"line {number}: {type(exc).__name__}: {exc}")

    report.inserted = load_rows(conn, rows())
    return report


def _object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("not a JSON object")
    return value
