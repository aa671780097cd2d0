"""The one place that picks the default sink from the environment.

* ``AUDIT_OPENSEARCH_URL`` set: ``OpenSearchSink`` (connection settings from the
  ``AUDIT_OPENSEARCH_*`` variables);
* else ``AUDIT_LOG_FILE`` set: a JSON-lines file there;
* else the embedded SQLite store at ``AUDIT_SQLITE_PATH`` (default ``./audit.sqlite3``),
  which the CLI can search.

If the SQLite file cannot be opened (a read-only working directory, say), records go
to standard output as JSON lines, with one warning, rather than break the host app.
"""

from __future__ import annotations

import warnings

from audit_middleware import env
from audit_middleware.errors import AuditError
from audit_middleware.sinks.base import Sink
from audit_middleware.sinks.jsonl import JsonLinesSink

__all__ = ["default_sink"]


def default_sink() -> Sink:
    """The sink used when none is configured, chosen by the environment (see the module docstring)."""
    if env.opensearch_configured():
        # Imported only here: a SQLite-only app never loads the OpenSearch client.
        from audit_middleware.sinks.opensearch.sink import OpenSearchSink  # noqa: PLC0415

        return OpenSearchSink()
    log_file = env.value(env.LOG_FILE)
    if log_file:
        return JsonLinesSink(log_file)
    from audit_middleware.sinks.sqlite import SQLiteSink  # noqa: PLC0415 - see above

    path = env.sqlite_path()
    try:
        return SQLiteSink(path)
    except (OSError, AuditError) as exc:
        warnings.warn(
            f"audit-middleware: cannot open the audit store {str(path)!r} ({exc}); writing audit records "
            "to standard output instead. Set AUDIT_SQLITE_PATH to a writable file, or configure a sink.",
            RuntimeWarning,
            stacklevel=2,
        )
        return JsonLinesSink.stdout()
