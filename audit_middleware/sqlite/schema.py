"""The SQLite layout of the embedded store: tables, indexes, full-text search, and the row of a record.

Shared by the writer (``sinks.sqlite``) and the reader (``query.sqlite_store``), which
never import each other. ``sqlite.migrations`` builds a file up to the current version
from these statements, step by step; a new version adds a step, never edits an old one.
This module is long because it keeps every version's statements (a migration step is
never edited once shipped) beside the one row format all writers share.

Version 1 (``EVENTS_V1``):

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

Version 2 (``ALERTS_AND_ARCHIVES_V2``):

* ``events_by_action_time`` ``(action, unix_ms)``: alert rules read one action's records
  in a time window across all tenants.
* ``alerts``: the state of the embedded alert rules (``sqlite.alerts``), one row per
  alert; at most one ``ACTIVE`` alert per rule, tenant and key (a partial unique index),
  so workers evaluating at the same time cannot raise one twice.
* ``archives``: the compressed NDJSON files retention wrote before deleting records.
* ``maintenance``: when each periodic job (retention, alert evaluation) last ran, and a
  lease so that one worker of many runs it.

Version 3 (``INGEST_LAYOUT_V3``, see "The SQLite layout" in ``docs/architecture.md``): an
index set the writer can afford. A b-tree index whose key is spread over many values (a
user, a resource type) dirties one page per row in every transaction; FTS5 instead buffers
a transaction's terms and writes them as one sorted segment. So:

* one b-tree index for reading, ``events_by_time`` ``(tenant, unix_ms DESC, event_id DESC,
  action, resource_type, outcome, project)``: newest first per tenant, and covering for the
  common filters, which are tested on the index entry without reading the row;
* the user filter through FTS5: ``user_keys`` (a generated column, nothing stored) holds
  one token per user value of the row, ``i`` + the hex of an id and ``e`` + the hex of an
  ASCII-lowercased email (so an exact, ``NOCASE``-like match is one term lookup);
* ``events_fts`` indexes the resource name, both emails and ``user_keys``
  (``columnsize=0``: no per-row size table; no prefix indexes; ``automerge`` 16 so fewer
  merges), fed once per transaction by ``insert_rows`` rather than by a per-row trigger;
  the action is matched against ``actions`` (every stored action id and label) rather
  than indexed per row;
* the per-filter indexes, ``events_for_retention`` and ``events_by_action_time`` are
  dropped: retention and alert rules read ``events_by_time`` tenant by tenant.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from typing import Any, Final

from audit_middleware.errors import AuditError
from audit_middleware.model.encoding import dumps
from audit_middleware.model.event import AuditEvent
from audit_middleware.model.tenancy import NO_TENANT_KEY
from audit_middleware.model.timestamps import parse_timestamp

__all__ = [
    "ALERTS_AND_ARCHIVES_V2",
    "EVENTS_V1",
    "FTS_TRIGGERS_V3",
    "INGEST_LAYOUT_V3",
    "INSERT",
    "READ_INDEXES_V3",
    "TENANT_KEYS",
    "TEXT_COLUMNS",
    "SQLiteStoreError",
    "email_key",
    "id_key",
    "insert_only",
    "insert_rows",
    "row_of",
    "row_of_document",
]

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


EVENTS_V1: Final[tuple[str, ...]] = (
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
    CREATE TRIGGER events_fts_update
    AFTER UPDATE OF resource_name, user_email, effective_user_email, user_id, effective_user_id,
        action, action_label ON events BEGIN
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


ALERTS_AND_ARCHIVES_V2: Final[tuple[str, ...]] = (
    "CREATE INDEX events_by_action_time ON events (action, unix_ms)",
    """
    CREATE TABLE alerts (
        id TEXT PRIMARY KEY,
        rule TEXT NOT NULL,
        tenant TEXT NOT NULL,
        group_key TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('ACTIVE', 'COMPLETED')),
        value REAL NOT NULL,
        threshold INTEGER NOT NULL,
        window_ms INTEGER NOT NULL,
        first_event_ms INTEGER NOT NULL,
        last_event_ms INTEGER NOT NULL,
        event_ids TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        ended_ms INTEGER,
        notified_ms INTEGER,
        notify_attempts INTEGER NOT NULL DEFAULT 0,
        notify_claim_ms INTEGER,
        notify_error TEXT
    )
    """,
    "CREATE UNIQUE INDEX alerts_active ON alerts (rule, tenant, group_key) WHERE state = 'ACTIVE'",
    "CREATE INDEX alerts_by_tenant ON alerts (tenant, started_ms DESC)",
    "CREATE INDEX alerts_to_notify ON alerts (started_ms) WHERE notified_ms IS NULL",
    """
    CREATE TABLE archives (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        path TEXT NOT NULL UNIQUE,
        tier TEXT NOT NULL,
        records INTEGER NOT NULL,
        first_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE maintenance (
        job TEXT PRIMARY KEY,
        holder TEXT,
        lease_until_ms INTEGER,
        last_run_ms INTEGER
    )
    """,
)


_USER_KEYS = """
    iif(user_id IS NULL, '', 'i' || hex(user_id))
    || iif(user_email IS NULL, '', ' e' || hex(lower(user_email)))
    || iif(effective_user_id IS NULL, '', ' i' || hex(effective_user_id))
    || iif(effective_user_email IS NULL, '', ' e' || hex(lower(effective_user_email)))
"""
FTS_COLUMNS: Final = "resource_name, user_email, effective_user_email, user_keys"
TEXT_COLUMNS: Final = "{resource_name user_email effective_user_email}"
"""The FTS5 column filter of free-text search (``user_keys`` is for the user filter only)."""

TENANT_KEYS: Final = (
    "WITH RECURSIVE t(key) AS (SELECT min(tenant) FROM events "
    "UNION ALL SELECT (SELECT min(tenant) FROM events WHERE tenant > t.key) FROM t WHERE t.key IS NOT NULL) "
    "SELECT key FROM t WHERE key IS NOT NULL"
)
"""Every stored tenant key, one index seek each: ``tenant IN (TENANT_KEYS)`` reads all tenants'
``events_by_time`` ranges, as a query across tenants must (there is no time-only index)."""

READ_INDEXES_V3: Final[tuple[str, ...]] = (
    "CREATE INDEX events_by_time ON events "
    "(tenant, unix_ms DESC, event_id DESC, action, resource_type, outcome, project)",
)
"""The b-tree index for reading; the bulk load drops it while it loads and builds it after."""

FTS_TRIGGERS_V3: Final[tuple[str, ...]] = (
    """
    CREATE TRIGGER events_fts_delete AFTER DELETE ON events BEGIN
        INSERT INTO events_fts (events_fts, rowid, resource_name, user_email, effective_user_email, user_keys)
        VALUES ('delete', old.seq, old.resource_name, old.user_email, old.effective_user_email,
                old.user_keys);
    END
    """,
    """
    CREATE TRIGGER events_fts_update
    AFTER UPDATE OF resource_name, user_email, effective_user_email, user_id, effective_user_id,
        action, action_label ON events BEGIN
        INSERT INTO events_fts (events_fts, rowid, resource_name, user_email, effective_user_email, user_keys)
        VALUES ('delete', old.seq, old.resource_name, old.user_email, old.effective_user_email,
                old.user_keys);
        INSERT INTO events_fts (rowid, resource_name, user_email, effective_user_email, user_keys)
        VALUES (new.seq, new.resource_name, new.user_email, new.effective_user_email, new.user_keys);
        INSERT OR IGNORE INTO actions (id, label) VALUES (new.action, new.action_label);
    END
    """,
)
"""Keep ``events_fts`` and ``actions`` in step when rows are deleted or their searched columns change.

An update of the document alone (a bulk load linking its rows to the hash chain before
the full-text index is rebuilt) leaves the index alone.

Inserts feed them in bulk instead (``insert_rows``): FTS5 flushes its in-memory terms at
every statement savepoint, so a per-row insert trigger wrote one tiny segment per row and
cost the writer about 2.5x (measured; see docs/benchmarks.md).
"""

FEED_SEARCH: Final[tuple[str, ...]] = (
    "INSERT INTO events_fts (rowid, resource_name, user_email, effective_user_email, user_keys) "
    "SELECT seq, resource_name, user_email, effective_user_email, user_keys FROM events WHERE seq > ?",
    "INSERT OR IGNORE INTO actions (id, label) "
    "SELECT DISTINCT action, action_label FROM events WHERE seq > ?",
)
"""Index the rows stored after ``seq`` (the caller's transaction added them) for search."""

_ADD_ACTIONS: Final = "INSERT OR IGNORE INTO actions (id, label) VALUES (?, ?)"
_ACTION, _ACTION_LABEL = 3, 4  # their places in a row (row_of_document)


def insert_rows(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> int:
    """Insert ``rows`` (``row_of``) and index them for search; returns how many were new.

    Call it inside a write transaction (``BEGIN IMMEDIATE``): every writer of the file
    stores rows through this, so the full-text index and ``actions`` stay complete.
    When every row was new, ``actions`` gets the batch's few distinct pairs from the rows
    at hand rather than from a scan of the stored rows (``FEED_SEARCH``'s second statement).
    """
    batch = rows if isinstance(rows, Sequence) else list(rows)
    top = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
    inserted = _insert(conn, batch)
    if not inserted:
        return 0
    conn.execute(FEED_SEARCH[0], (top,))
    if inserted == len(batch):
        conn.executemany(_ADD_ACTIONS, {(row[_ACTION], row[_ACTION_LABEL]) for row in batch})
    else:  # some were stored already: only the stored rows' actions
        conn.execute(FEED_SEARCH[1], (top,))
    return inserted


def insert_only(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> int:
    """Insert ``rows`` without indexing them for search; returns how many were new.

    Only for a bulk load whose full-text index and ``actions`` are built after its rows
    (``sqlite.bulk``), in the same transaction.
    """
    return _insert(conn, rows if isinstance(rows, Sequence) else list(rows))


ROWS_PER_STATEMENT: Final = (1000, 250, 50, 10, 1)
"""Rows per INSERT statement, largest first: a batch is stored by a few multi-row statements,
never one statement per row. sqlite3 releases the GIL for every statement it steps, and in a
busy process (a server's request thread running Python) each release can cost the writer a
switch interval (5 ms) to get the GIL back: beside a thread running Python the writer stored
194 rows/s with one statement per row, 6,400 in statements of 256 rows and 10,600-13,900 in
statements of 1,000, against about 40,000 alone (``benchmarks/sqlite_writer.py``). A few
fixed sizes keep the statements in sqlite3's statement cache."""

_COLUMNS_PER_ROW: Final = INSERT.count("?")


def _insert_statement(rows: int) -> str:
    head, _, one_row = INSERT.rpartition("VALUES")
    return f"{head}VALUES {', '.join([one_row.strip()] * rows)}"


_INSERTS: Final = {size: _insert_statement(size) for size in ROWS_PER_STATEMENT}


def _variables_allowed(conn: sqlite3.Connection) -> int:
    # A build may set the limit low; Python 3.10 cannot ask, and gets SQLite's old default.
    getlimit = getattr(conn, "getlimit", None)
    if getlimit is None:
        return 999
    allowed: int = getlimit(getattr(sqlite3, "SQLITE_LIMIT_VARIABLE_NUMBER", 9))
    return allowed


def _insert(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> int:
    """INSERT ``rows`` in multi-row statements (see ``ROWS_PER_STATEMENT``); returns how many were new."""
    most = _variables_allowed(conn) // _COLUMNS_PER_ROW
    inserted = at = 0
    for size in ROWS_PER_STATEMENT:
        if size > most:
            continue
        statement = _INSERTS[size]
        while len(rows) - at >= size:
            parameters = list(chain.from_iterable(rows[at : at + size]))
            inserted += max(conn.execute(statement, parameters).rowcount, 0)
            at += size
    return inserted


INGEST_LAYOUT_V3: Final[tuple[str, ...]] = (
    "DROP TRIGGER events_fts_insert",
    "DROP TRIGGER events_fts_delete",
    "DROP TRIGGER events_fts_update",
    "DROP TABLE events_fts",
    "DROP INDEX events_by_time",
    *(f"DROP INDEX events_by_{column}" for column in _FILTER_INDEXES),
    "DROP INDEX events_for_retention",
    "DROP INDEX events_by_action_time",
    f"ALTER TABLE events ADD COLUMN user_keys TEXT GENERATED ALWAYS AS ({_USER_KEYS}) VIRTUAL",
    *READ_INDEXES_V3,
    "CREATE TABLE actions (id TEXT NOT NULL, label TEXT NOT NULL, PRIMARY KEY (id, label)) WITHOUT ROWID",
    "INSERT OR IGNORE INTO actions (id, label) SELECT DISTINCT action, action_label FROM events",
    f"""
    CREATE VIRTUAL TABLE events_fts USING fts5(
        {FTS_COLUMNS},
        content='events', content_rowid='seq', columnsize=0,
        tokenize='unicode61 remove_diacritics 2'
    )
    """,
    "INSERT INTO events_fts (events_fts, rank) VALUES ('automerge', 16)",
    "INSERT INTO events_fts (events_fts) VALUES ('rebuild')",
    *FTS_TRIGGERS_V3,
)
"""Version 3; it rebuilds the full-text index once over the stored rows (a minute per ~1M)."""


class SQLiteStoreError(AuditError):
    """The SQLite file cannot be used; the message says why."""


def row_of(event: AuditEvent, document_text: str | None = None) -> tuple[Any, ...]:
    """The ``events`` row of ``event`` (its columns come from the stored document).

    Tenant and project columns hold the stored keys (``model.tenancy``), as OpenSearch
    does; text is stored as the document encodes it (a lone surrogate becomes U+FFFD).
    ``document_text`` stores a document as it is (a restored archive keeps every field,
    also those this version does not model); by default it is ``event.to_document()``.
    """
    document = event.to_document()
    text = dumps(document).decode("utf-8") if document_text is None else document_text
    return row_of_document(document, text, event.unix_ms)


def row_of_document(document: Mapping[str, Any], text: str, unix_ms: int | None = None) -> tuple[Any, ...]:
    """The ``events`` row of a stored ``document`` whose JSON is ``text`` (kept byte for byte).

    ``unix_ms`` saves parsing ``@timestamp`` when the caller knows it. Raises ``KeyError``,
    ``TypeError`` or ``ValueError`` for a document that is not an audit record.
    """
    event = document["event"]
    audit = document["audit"]
    user = document.get("user") or {}
    effective = user.get("effective") or {}
    resource = audit.get("resource") or {}
    action_id = event["action"]
    label = (audit.get("action") or {}).get("label") or action_id
    if not isinstance(action_id, str) or not isinstance(event["id"], str):
        raise TypeError("event.action and event.id must be strings")
    return (
        (document.get("organization") or {}).get("id", NO_TENANT_KEY),
        parse_timestamp(document["@timestamp"]) if unix_ms is None else unix_ms,
        event["id"],
        _text(action_id),
        _text(label),
        _text(resource.get("type")),
        _text(resource.get("id")),
        _text(resource.get("name")),
        _text(user.get("id")),
        _text(user.get("email")),
        _text(effective.get("id")),
        _text(effective.get("email")),
        (audit.get("project") or {}).get("id"),
        event.get("outcome", "unknown"),
        text,
    )


_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def id_key(value: str) -> str:
    """The ``user_keys`` token of a user id (exact match).

    >>> id_key("42")
    'i3432'
    """
    return "i" + (_text(value) or "").encode("utf-8").hex()


def email_key(value: str) -> str:
    """The ``user_keys`` token of an email, matched case-insensitively in ASCII as ``NOCASE`` is.

    >>> email_key("Ann@X") == email_key("ann@x")
    True
    """
    return "e" + (_text(value) or "").translate(_ASCII_LOWER).encode("utf-8").hex()


def _text(value: str | None) -> str | None:
    # sqlite3 refuses to bind a lone surrogate; the document replaces them the same way
    if value is None or value.isascii():
        return value
    return _SURROGATE.sub("\ufffd", value)
