"""The SQLite layout of the embedded store: tables, indexes, full-text search, and the row of a record.

Shared by the writer (``sinks.sqlite``) and the reader (``query.sqlite_store``), which
never import each other. ``sqlite.migrations`` builds a file up to the current version
from these statements, step by step; a new version adds a step, never edits an old one.

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
"""

from __future__ import annotations

import re
from typing import Any, Final

from audit_middleware.errors import AuditError
from audit_middleware.model.encoding import dumps
from audit_middleware.model.event import AuditEvent
from audit_middleware.model.tenancy import NO_TENANT_KEY

__all__ = ["ALERTS_AND_ARCHIVES_V2", "EVENTS_V1", "INSERT", "SQLiteStoreError", "row_of"]

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
        dumps(document).decode("utf-8") if document_text is None else document_text,
    )


def _text(value: str | None) -> str | None:
    # sqlite3 refuses to bind a lone surrogate; the document replaces them the same way
    if value is None or value.isascii():
        return value
    return _SURROGATE.sub("\ufffd", value)
