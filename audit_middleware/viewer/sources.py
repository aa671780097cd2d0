"""Where the viewer reads when the app names no store: where the app's records go.

The configured sink decides: ``SQLiteSink`` means its file, read by ``SQLiteStore``;
``OpenSearchSink`` means its cluster and prefix, read by ``OpenSearchStore``. Any other
sink (JSON lines, memory, an app's own) is not searchable, so the viewer needs ``store=``.
"""

from __future__ import annotations

from audit_middleware.errors import AuditValidationError
from audit_middleware.query.store import AuditStore
from audit_middleware.sinks.base import Sink

__all__ = ["store_for_sink"]


def store_for_sink(sink: Sink) -> AuditStore:
    """The store that reads what ``sink`` writes; a clear error when there is none."""
    from audit_middleware.sinks.sqlite import SQLiteSink  # noqa: PLC0415 - only the one in use is loaded

    if isinstance(sink, SQLiteSink):
        from audit_middleware.query.sqlite_store import SQLiteStore  # noqa: PLC0415

        return SQLiteStore(sink.path)
    from audit_middleware.sinks.opensearch.sink import OpenSearchSink  # noqa: PLC0415

    if isinstance(sink, OpenSearchSink):
        from audit_middleware.query.opensearch_store import OpenSearchStore  # noqa: PLC0415

        return OpenSearchStore.from_settings(sink.settings)
    raise AuditValidationError(
        f"the audit viewer cannot read a {type(sink).__name__}: records must go to SQLite or OpenSearch, "
        "or pass AuditViewer(store=...)"
    )
