"""The SQLite layout of the embedded store: tables, indexes, full-text search, and the row of a record.

Shared by the writer (``sinks.sqlite``) and the reader (``query.sqlite_store``), which
never import each other.

Layout (schema version 1, kept in ``PRAGMA user_version``):

* ``events``: one row per record. ``seq`` (AUTOINCREMENT, so it only grows) orders
  insertion for ``tail``; one column per filter; ``document`` holds the full ECS
  document as JSON, which is what every read returns. ``UNIQUE (tenant, event_id)``
  makes a replayed record a no-op (``INSERT OR IGNORE``).
* One index per filter, each ``(tenant, <filter>, unix_ms DESC, event_id DESC)``: the
  tenant scope narrows first and rows come out already newest first, so a first page
  reads ``page_size`` index entries. Emails compare ``NOCASE``. ``unix_ms`` alone is
  indexed for retention, which crosses tenants.
* ``events_fts``: an FTS5 index over the resource name, the action id and label, and
  both user emails, with ``events`` as its external content (kept in step by
  triggers, nothing stored twice). ``unicode61 remove_diacritics 2`` folds case and
  accents; ``prefix='2 3'`` keeps short prefix searches fast.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any, Final

from audit_middleware.errors import AuditError
from audit_middleware.model.encoding import dumps
from audit_middleware.model.event import AuditEvent
from audit_middleware.model.tenancy import NO_TENANT_KEY

__all__ = ["INSERT", "SCHEMA_VERSION", "SQLiteStoreError", "ensure_schema", "row_of"]

SCHEMA_VERSION: Final = 1
_SURROGATE: Final = re.compile("[\ud800-\udfff]")

_FILTER_INDEXES = (
    "action",
    "resource_type",
    "user_id",
    "user_email",
    "effective_user_id",
    "effective_user_email",
    "project",
    "outcome",
)
INSERT = """
    INSERT OR IGNORE INTO events (
        tenant, unix_ms, event_id, action, action_label, resource_type, resource_id, resource_name,
        user_id, user_email, effective_user_id, effective_user_email, project, outcome, document
    ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

USER_SEQS = """
    SELECT seq FROM events WHERE tenant = ? AND user_id = ?
    UNION ALL SELECT seq FROM events WHERE tenant = ? AND user_email = ?
    UNION ALL SELECT seq FROM events WHERE tenant = ? AND effective_user_id = ?
    UNION ALL SELECT seq FROM events WHERE tenant = ? AND effective_user_email = ?
"""

_SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        unix_ms INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        action TEXT NOT NULL,
        action_label TEXT NOT NULL,
        resource_type TEXT,
        resource_id TEXT,
        resource_name TEXT,
        user_id TEXT,
        user_email TEXT COLLATE NOCASE,
        effective_user_id TEXT,
        effective_user_email TEXT COLLATE NOCASE,
        project TEXT,
        outcome TEXT NOT NULL,
        document TEXT NOT NULL,
        UNIQUE (tenant, event_id)
    )
    """,
    "CREATE INDEX events_by_time ON events (tenant, unix_ms DESC, event_id DESC)",
    *(
        f"CREATE INDEX events_by_{column} ON events (tenant, {column}, unix_ms DESC, event_id DESC)"
        for column in _FILTER_INDEXES
    ),
    "CREATE INDEX events_for_retention ON events (unix_ms)",
    """
    CREATE VIRTUAL TABLE events_fts USING fts5(
        resource_name, action, action_label, user_email, effective_user_email,
        content='events', content_rowid='seq',
        tokenize='unicode61 remove_diacritics 2', prefix='2 3'
    )
    """,
    """
    CREATE TRIGGER events_fts_insert AFTER INSERT ON events BEGIN
        INSERT INTO events_fts (rowid, resource_name, action, action_label, user_email, effective_user_email)
        VALUES (new.seq, new.resource_name, new.action, new.action_label, new.user_email,
                new.effective_user_email);
    END
    """,
    """
    CREATE TRIGGER events_fts_delete AFTER DELETE ON events BEGIN
        INSERT INTO events_fts (
            events_fts, rowid, resource_name, action, action_label, user_email, effective_user_email
        ) VALUES ('delete', old.seq, old.resource_name, old.action, old.action_label, old.user_email,
                  old.effective_user_email);
    END
    """,
    """
    CREATE TRIGGER events_fts_update AFTER UPDATE ON events BEGIN
        INSERT INTO events_fts (
            events_fts, rowid, resource_name, action, action_label, user_email, effective_user_email
        ) VALUES ('delete', old.seq, old.resource_name, old.action, old.action_label, old.user_email,
                  old.effective_user_email);
        INSERT INTO events_fts (rowid, resource_name, action, action_label, user_email, effective_user_email)
        VALUES (new.seq, new.resource_name, new.action, new.action_label, new.user_email,
                new.effective_user_email);
    END
    """,
)


class SQLiteStoreError(AuditError):
    """The SQLite file cannot be used; the message says why."""


def row_of(event: AuditEvent) -> tuple[Any, ...]:
    """The ``events`` row of ``event`` (its columns come from the stored document).

    Tenant and project columns hold the stored keys (``model.tenancy``), as OpenSearch
    does; text is stored as the document encodes it (a lone surrogate becomes U+FFFD).
    """
    document = event.to_document()
    user = document.get("user", {})
    effective = user.get("effective", {})
    resource = event.resource
    return (
        document.get("organization", {}).get("id", NO_TENANT_KEY),
        event.unix_ms,
        event.id,
        _text(event.action.id),
        _text(event.action.label),
        _text(resource.type) if resource else None,
        _text(resource.id) if resource else None,
        _text(resource.name) if resource else None,
        _text(user.get("id")),
        _text(user.get("email")),
        _text(effective.get("id")),
        _text(effective.get("email")),
        document["audit"].get("project", {}).get("id"),
        event.outcome,
        dumps(document).decode("utf-8"),
    )


def _text(value: str | None) -> str | None:
    # sqlite3 refuses to bind a lone surrogate; the document replaces them the same way
    if value is None or value.isascii():
        return value
    return _SURROGATE.sub("\ufffd", value)


def ensure_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Create the schema in a new file; accept the current version; refuse a newer one."""
    version = schema_version(conn, path)
    if version == SCHEMA_VERSION:
        return
    # journal_mode is a property of the file, set once, outside any transaction
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise SQLiteStoreError(f"{str(path)!r} cannot use WAL mode (got {mode!r})")
    conn.execute("BEGIN IMMEDIATE")  # one process creates; the others wait, then find it done
    if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.execute("COMMIT")


def schema_version(conn: sqlite3.Connection, path: Path) -> int:
    """The file's schema version (0: empty); raises for a newer version or a foreign database."""
    # One statement, one snapshot: another process may create the schema between two reads.
    row = conn.execute(
        "SELECT (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_schema)"
    ).fetchone()
    version, tables = int(row[0]), int(row[1])
    if version > SCHEMA_VERSION:
        raise SQLiteStoreError(
            f"{str(path)!r} has schema version {version}, made by a newer audit-middleware "
            f"(this one reads version {SCHEMA_VERSION}): upgrade audit-middleware"
        )
    if version == 0 and tables:
        raise SQLiteStoreError(f"{str(path)!r} is a SQLite database, but not an audit store")
    return version
