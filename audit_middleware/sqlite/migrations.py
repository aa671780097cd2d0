"""Bring an audit file to the current schema version, one ordered step at a time.

The version lives in ``PRAGMA user_version`` (0: a new, empty file). ``STEPS[n]`` turns
version ``n`` into ``n + 1``; ``SCHEMA_VERSION`` is their count. A file made by any
earlier version is upgraded in place, never refused and never copied:

* each step runs in its own transaction under ``BEGIN IMMEDIATE``, and sets
  ``user_version`` inside it, so a step either happens completely (version ``n + 1``)
  or not at all (still version ``n``, readable by the version that wrote it);
* several processes may open the file at once (gunicorn workers): the first takes the
  write lock and upgrades, the others wait for it (``busy_timeout``) and find the work
  done, because the version is read again under the lock;
* a file of a newer version is refused (this version cannot know its layout), and so
  is a SQLite file that is not an audit store.

To change the layout, append a step: never edit one that has shipped, since files in
the field went through it already. A step is SQL statements, or a function for data
that SQL alone cannot move.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from audit_middleware.sqlite.chains import CHAINS_V4, create_store_chain
from audit_middleware.sqlite.schema import (
    ALERTS_AND_ARCHIVES_V2,
    EVENTS_V1,
    INGEST_LAYOUT_V3,
    SQLiteStoreError,
)

__all__ = ["PAGE_SIZE", "SCHEMA_VERSION", "STEPS", "Migration", "ensure_schema", "schema_version", "upgrade"]


@dataclass(frozen=True)
class Migration:
    """One step from the version before it to the next: SQL ``statements``, then ``run``."""

    description: str
    statements: tuple[str, ...] = ()
    run: Callable[[sqlite3.Connection], None] | None = None


STEPS: Final[tuple[Migration, ...]] = (
    Migration("events, filter indexes and full-text search", EVENTS_V1),
    Migration("alert state, retention archives, maintenance leases", ALERTS_AND_ARCHIVES_V2),
    Migration("one covering time index, users and text through full-text search", INGEST_LAYOUT_V3),
    Migration("hash chain columns, chain head, checkpoints", CHAINS_V4, create_store_chain),
)
SCHEMA_VERSION: Final = len(STEPS)


def schema_version(conn: sqlite3.Connection, path: Path, latest: int = SCHEMA_VERSION) -> int:
    """The file's schema version (0: empty); raises for a newer version or a foreign database."""
    # One statement, one snapshot: another process may create the schema between two reads.
    row = conn.execute(
        "SELECT (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_schema)"
    ).fetchone()
    version, tables = int(row[0]), int(row[1])
    if version > latest:
        raise SQLiteStoreError(
            f"{str(path)!r} has schema version {version}, made by a newer audit-middleware "
            f"(this one reads versions up to {latest}): upgrade audit-middleware"
        )
    if version == 0 and tables:
        raise SQLiteStoreError(f"{str(path)!r} is a SQLite database, but not an audit store")
    return version


PAGE_SIZE: Final = 16384
"""The page size of a new file (SQLite's default is 4096; a file keeps the size it was made with).

A transaction of the writer appends about 1.5 MB of rows, index entries and full-text
segments, which SQLite writes to the WAL and later copies into the file page by page:
larger pages are fewer frames, fewer system calls and fewer page headers for the same
bytes (see docs/benchmarks.md)."""


def ensure_schema(conn: sqlite3.Connection, path: Path) -> list[int]:
    """Create or upgrade the file to ``SCHEMA_VERSION``; returns the versions it reached on the way."""
    version = schema_version(conn, path)
    if version == SCHEMA_VERSION:
        return []
    if version == 0:  # takes effect only while the file has no page yet (switching on WAL writes one)
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    # journal_mode is a property of the file, set once, outside any transaction
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise SQLiteStoreError(f"{str(path)!r} cannot use WAL mode (got {mode!r})")
    return upgrade(conn, path, STEPS)


def upgrade(conn: sqlite3.Connection, path: Path, steps: Sequence[Migration]) -> list[int]:
    """Apply the ``steps`` the file has not had yet, each in its own transaction.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Returns the versions
    reached, in order (empty when another process had upgraded the file already).
    """
    reached: list[int] = []
    while True:
        version = reached[-1] if reached else 0
        conn.execute("BEGIN IMMEDIATE")  # one process upgrades; the others wait, then see it done
        try:
            version = schema_version(conn, path, len(steps))
            if version == len(steps):
                conn.execute("COMMIT")
                return reached
            step = steps[version]
            for statement in step.statements:
                conn.execute(statement)
            if step.run is not None:
                step.run(conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException as exc:
            conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error) and version < len(steps):
                raise SQLiteStoreError(
                    f"cannot upgrade {str(path)!r} to schema version {version + 1} "
                    f"({steps[version].description}): {exc}; the file is unchanged at version {version}"
                ) from exc
            raise
        reached.append(version + 1)
