"""The one place that picks the default sink from the environment; it never raises.

* ``AUDIT_OPENSEARCH_URL`` set: ``OpenSearchSink`` (connection settings from the
  ``AUDIT_OPENSEARCH_*`` variables, state in ``AUDIT_SPOOL_DIR``);
* else ``AUDIT_LOG_FILE`` set: a JSON-lines file there;
* else the embedded SQLite store at ``AUDIT_SQLITE_PATH`` (default ``./audit.sqlite3``),
  which the CLI can search. It keeps the product's promises by itself: the four alert
  rules are evaluated (new alerts are POSTed to ``AUDIT_ALERT_WEBHOOK``, or logged), and
  records older than ``AUDIT_SQLITE_RETENTION_DAYS`` (90; ``off`` keeps them) are
  archived to ``AUDIT_SQLITE_ARCHIVE_DIR`` and deleted.

The default configuration is built by the first request of a process that never called
``configure()``, so what cannot be used must not fail there. With one warning, instead:

* an OpenSearch state directory that cannot be used (it lies under a regular file, it is
  read-only) is replaced by a private one in the temporary directory
  (``/tmp/audit-middleware-<uid>``): records still go to OpenSearch;
* a store or log file that cannot be opened (a read-only working directory, a file that
  is not an audit store) is replaced by a private SQLite store in the fallback directory
  (``AUDIT_FALLBACK_DIR``, else ``<state dir>/undelivered``), searchable with
  ``--store sqlite:<path>``; failing that, one in the temporary directory;
* when nothing can be opened, records go to the last resort (``sinks.lastresort``);
* an ``AUDIT_ALERT_WEBHOOK`` or ``AUDIT_SQLITE_RETENTION_DAYS`` that cannot be used costs
  only itself: alerts are then logged, and no record is deleted until it is fixed.

A private store used instead keeps the same alert rules and retention.

Records never go to standard output by default: that would put personal data into log
pipelines, where searches miss them. A store that is only busy (another process creating
it) is waited for by ``SQLiteSink`` itself, never a reason to fall back.
"""

from __future__ import annotations

import math
import os
import stat
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit_middleware import env
from audit_middleware.errors import AuditValidationError, SinkSetupError
from audit_middleware.sinks.base import Sink
from audit_middleware.sinks.jsonl import JsonLinesSink
from audit_middleware.sinks.lastresort import LastResortSink
from audit_middleware.sinks.private import private_directory

if TYPE_CHECKING:
    from audit_middleware.sqlite.retention import SQLiteRetention

__all__ = ["default_retention", "default_sink", "temporary_state_dir"]

FALLBACK_STORE_NAME = "audit.sqlite3"


def default_sink() -> Sink:
    """The sink used when none is configured, chosen by the environment (see the module docstring)."""
    try:
        return _configured_sink()
    except Exception as exc:  # noqa: BLE001 - never a crash of the host app: fall back, with a warning
        problem = str(exc)
    return _fallback_store(problem)


def _configured_sink() -> Sink:
    if env.opensearch_configured():
        # Imported only here: a SQLite-only app never loads the OpenSearch client.
        from audit_middleware.sinks.opensearch.sink import OpenSearchSink  # noqa: PLC0415

        try:
            return OpenSearchSink()
        except SinkSetupError as exc:
            state = temporary_state_dir()
            sink = OpenSearchSink(state_dir=state)
            _warn(f"{exc}; spooling in {state} instead, until {env.SPOOL_DIR} is fixed")
            return sink
    log_file = env.value(env.LOG_FILE)
    if log_file:
        return JsonLinesSink(log_file)
    from audit_middleware.sinks.sqlite import SQLiteSink  # noqa: PLC0415 - see above

    return SQLiteSink(env.sqlite_path(), **_housekeeping())


def _housekeeping() -> dict[str, Any]:
    """The default store's alert rules, notifier and retention, from the environment.

    A setting that cannot be used costs only itself, with a warning: a bad webhook URL
    leaves alerts in the log, a bad retention keeps every record (deleting by a guess
    could lose what the user meant to keep).
    """
    from audit_middleware.model.alerts import default_rules  # noqa: PLC0415 - see above
    from audit_middleware.sinks.notify import WebhookNotifier, log_alert  # noqa: PLC0415

    options: dict[str, Any] = {"alert_rules": default_rules(), "on_alert": log_alert}
    webhook = env.value(env.ALERT_WEBHOOK)
    if webhook:
        try:
            options["on_alert"] = WebhookNotifier(webhook)
        except AuditValidationError as exc:
            _warn(f"audit-middleware: {env.ALERT_WEBHOOK} ignored ({exc}); alerts are logged instead")
    try:
        options["retention"] = default_retention()
    except AuditValidationError as exc:
        _warn(f"audit-middleware: {exc}; no records are deleted until it is fixed")
    return options


def default_retention() -> SQLiteRetention | None:
    """The default store's retention (``AUDIT_SQLITE_RETENTION_DAYS``, ``AUDIT_SQLITE_ARCHIVE_DIR``)."""
    from audit_middleware.sqlite.retention import STANDARD_DAYS, SQLiteRetention  # noqa: PLC0415

    days = env.value(env.SQLITE_RETENTION_DAYS)
    if days is not None and days.strip().lower() == "off":
        return None
    try:
        standard = STANDARD_DAYS if days is None else float(days)
    except ValueError:
        standard = math.nan
    if not math.isfinite(standard):
        raise AuditValidationError(
            f"{env.SQLITE_RETENTION_DAYS} must be a number of days or 'off', not {days!r}"
        )
    return SQLiteRetention(tiers={"standard": standard}, archive_dir=env.value(env.SQLITE_ARCHIVE_DIR))


def _fallback_store(problem: str) -> Sink:
    from audit_middleware.sinks.sqlite import SQLiteSink  # noqa: PLC0415 - only when falling back

    candidates: list[Callable[[], Path]] = [
        lambda: env.fallback_dir() / FALLBACK_STORE_NAME,
        lambda: temporary_state_dir() / FALLBACK_STORE_NAME,
    ]
    for candidate in candidates:
        try:
            path = candidate()
            private_directory(path.parent)
            sink = SQLiteSink(path, **_housekeeping())
        except Exception:  # noqa: BLE001, S112 - try the next place
            continue
        _warn(
            f"audit-middleware: {problem}; writing audit records to the private SQLite store {str(path)!r} "
            f"instead (search it with --store sqlite:{path}). Fix the setting, or configure a sink."
        )
        return sink
    last_resort = LastResortSink(env.fallback_dir() / "default")
    _warn(
        f"audit-middleware: {problem}; no audit store could be opened, records are kept by the last "
        f"resort in {last_resort.last_resort.directory}. Fix the setting, or configure a sink."
    )
    return last_resort


def temporary_state_dir() -> Path:
    """A private directory of this user in the temporary directory: ``<tmp>/audit-middleware-<uid>``.

    Refused (``OSError``) when something else is there already: a symbolic link, or a
    directory of another user, which could read or replace the records.
    """
    path = Path(tempfile.gettempdir()) / f"audit-middleware-{os.getuid()}"
    if path.is_symlink():
        raise PermissionError(f"{path} is a symbolic link")
    private_directory(path, tighten=True)
    info = path.lstat()
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise PermissionError(f"{path} belongs to another user or is open to others")
    return path


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)
