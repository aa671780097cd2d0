"""The one place that picks the default sink from the environment.

* ``AUDIT_OPENSEARCH_URL`` set: ``OpenSearchSink`` (connection settings from the
  ``AUDIT_OPENSEARCH_*`` variables);
* else ``AUDIT_LOG_FILE`` set: a JSON-lines file there;
* else the embedded SQLite store at ``AUDIT_SQLITE_PATH`` (default ``./audit.sqlite3``),
  which the CLI can search. It keeps the product's promises by itself: the four alert
  rules are evaluated (new alerts are POSTed to ``AUDIT_ALERT_WEBHOOK``, or logged), and
  records older than ``AUDIT_SQLITE_RETENTION_DAYS`` (90; ``off`` keeps them) are
  archived to ``AUDIT_SQLITE_ARCHIVE_DIR`` and deleted.

If the SQLite file cannot be opened (a read-only working directory, say), records go
to standard output as JSON lines, with one warning, rather than break the host app.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from audit_middleware import env
from audit_middleware.errors import AuditError, AuditValidationError
from audit_middleware.sinks.base import Sink
from audit_middleware.sinks.jsonl import JsonLinesSink

if TYPE_CHECKING:
    from audit_middleware.sqlite.retention import SQLiteRetention

__all__ = ["default_retention", "default_sink"]


def default_sink() -> Sink:
    """The sink used when none is configured, chosen by the environment (see the module docstring)."""
    if env.opensearch_configured():
        # Imported only here: a SQLite-only app never loads the OpenSearch client.
        from audit_middleware.sinks.opensearch.sink import OpenSearchSink  # noqa: PLC0415

        return OpenSearchSink()
    log_file = env.value(env.LOG_FILE)
    if log_file:
        return JsonLinesSink(log_file)
    from audit_middleware.model.alerts import default_rules  # noqa: PLC0415 - see above
    from audit_middleware.sinks.notify import log_alert  # noqa: PLC0415
    from audit_middleware.sinks.sqlite import SQLiteSink  # noqa: PLC0415

    path = env.sqlite_path()
    try:
        webhook = env.value(env.ALERT_WEBHOOK)
        return SQLiteSink(
            path,
            alert_rules=default_rules(),
            on_alert=None if webhook else log_alert,
            alert_webhook=webhook,
            retention=default_retention(),
        )
    except (OSError, AuditError) as exc:
        warnings.warn(
            f"audit-middleware: cannot open the audit store {str(path)!r} ({exc}); writing audit records "
            "to standard output instead. Set AUDIT_SQLITE_PATH to a writable file, or configure a sink.",
            RuntimeWarning,
            stacklevel=2,
        )
        return JsonLinesSink.stdout()


def default_retention() -> SQLiteRetention | None:
    """The default store's retention (``AUDIT_SQLITE_RETENTION_DAYS``, ``AUDIT_SQLITE_ARCHIVE_DIR``)."""
    from audit_middleware.sqlite.retention import STANDARD_DAYS, SQLiteRetention  # noqa: PLC0415

    days = env.value(env.SQLITE_RETENTION_DAYS)
    if days is not None and days.strip().lower() == "off":
        return None
    try:
        standard = STANDARD_DAYS if days is None else float(days)
    except ValueError:
        raise AuditValidationError(
            f"{env.SQLITE_RETENTION_DAYS} must be a number of days or 'off', not {days!r}"
        ) from None
    return SQLiteRetention(tiers={"standard": standard}, archive_dir=env.value(env.SQLITE_ARCHIVE_DIR))
