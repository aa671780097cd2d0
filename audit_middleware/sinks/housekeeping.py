"""The periodic jobs of the embedded store: alert rules with their notifiers, and retention.

``Housekeeping`` runs them on a daemon thread of its own in each writing process (so a
long retention run never holds up the record writer), started with the first record.
Which process runs a job is decided in the database (``sqlite.maintenance``): alert
rules are evaluated every ``alert_interval`` seconds and retention every
``retention.interval`` seconds by whichever worker claims the job first. A failing job
is logged and tried again at its next turn; it never stops the thread or the writes.

The CLI calls ``evaluate_alerts`` and ``apply_retention`` directly, outside the
schedule (``audit-middleware alerts check``, ``retention apply``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from audit_middleware import logs
from audit_middleware.model.alerts import Alert, AlertRule
from audit_middleware.sinks.notify import AlertNotifier
from audit_middleware.sinks.worker import after_fork_in_child
from audit_middleware.sqlite import alerts as sqlite_alerts
from audit_middleware.sqlite import maintenance
from audit_middleware.sqlite import retention as sqlite_retention
from audit_middleware.sqlite.connection import ConnectionPool

__all__ = ["Housekeeping"]

ALERTS_JOB = "alerts"
RETENTION_JOB = "retention"
_LEASE_MS = 10 * 60_000  # a worker that died holding a job delays it by this much at most


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Housekeeping:
    """Alert evaluation and retention for the file behind ``pool``."""

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        alert_rules: Sequence[AlertRule] = (),
        notifiers: Sequence[AlertNotifier] = (),
        alert_interval: float = 15.0,
        retention: sqlite_retention.SQLiteRetention | None = None,
    ) -> None:
        if alert_interval <= 0:
            raise ValueError("alert_interval must be a positive number of seconds")
        self._pool = pool
        self.alert_rules = tuple(alert_rules)
        self.notifiers = tuple(notifiers)
        self.alert_interval = alert_interval
        self.retention = retention
        self.on_removal: sqlite_retention.RemovalHook | None = None
        """Told of each chunk retention deletes, in its transaction (set by the sink: the chain)."""
        self._reset()
        after_fork_in_child(self._reset)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def has_jobs(self) -> bool:
        """Whether there is anything to run periodically."""
        return bool(self.alert_rules) or self.retention is not None

    def start(self) -> None:
        """Start this process's thread (idempotent; a forked child starts its own)."""
        if not self.has_jobs or self._thread is not None or self._stop.is_set():
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="audit-sqlite-housekeeping", daemon=True
                )
                self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread (a job in progress finishes its chunk)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_due()
            self._stop.wait(min(self.alert_interval, 5.0) if self.alert_rules else 5.0)

    def run_due(self, now_ms: int | None = None) -> None:
        """Run each job that is due and not claimed by another worker; errors are logged."""
        now = _now_ms() if now_ms is None else now_ms
        if self.alert_rules and self._claim(ALERTS_JOB, now, int(self.alert_interval * 1000)):
            self._guarded(ALERTS_JOB, lambda: self.evaluate_alerts(now))
        if self.retention is not None and self._claim(
            RETENTION_JOB, now, int(self.retention.interval * 1000)
        ):
            retention = self.retention
            self._guarded(RETENTION_JOB, lambda: self.apply_retention(retention))

    def _claim(self, job: str, now: int, every_ms: int) -> bool:
        try:
            with self._pool.borrow() as conn:
                return maintenance.claim(conn, job, now_ms=now, every_ms=every_ms, lease_ms=_LEASE_MS)
        except Exception as exc:  # noqa: BLE001 - a locked or broken file must not end the thread
            logs.warn("audit-middleware: could not schedule a housekeeping job", job=job, error=repr(exc))
            return False

    def _guarded(self, job: str, run: Callable[[], object]) -> None:
        try:
            run()
        except Exception as exc:  # noqa: BLE001 - logged; the job runs again at its next turn
            logs.warn("audit-middleware: housekeeping job failed", job=job, error=repr(exc))
        finally:
            try:
                with self._pool.borrow() as conn:
                    maintenance.finish(conn, job, now_ms=_now_ms())
            except Exception as exc:  # noqa: BLE001 - the lease then expires by itself
                logs.warn("audit-middleware: could not release a housekeeping job", job=job, error=repr(exc))

    def evaluate_alerts(self, now_ms: int | None = None) -> sqlite_alerts.Evaluation:
        """Evaluate the alert rules now and notify what is due; returns the evaluation."""
        now = _now_ms() if now_ms is None else now_ms
        with self._pool.borrow() as conn:
            evaluation = sqlite_alerts.evaluate(conn, self.alert_rules, now)
        notified = [alert.id for alert in evaluation.to_notify if self._notify(alert)]
        if notified:
            with self._pool.borrow() as conn:
                sqlite_alerts.mark_notified(conn, notified, _now_ms())
        return evaluation

    def _notify(self, alert: Alert) -> bool:
        try:
            for notifier in self.notifiers:
                notifier(alert)
        except Exception as exc:  # noqa: BLE001 - a user's callback may raise anything
            logs.warn("audit-middleware: an alert notifier failed", alert=alert.id, error=repr(exc))
            with self._pool.borrow() as conn:
                sqlite_alerts.mark_notify_failed(conn, alert.id, repr(exc))
            return False
        return True

    def apply_retention(
        self, retention: sqlite_retention.SQLiteRetention
    ) -> sqlite_retention.RetentionReport:
        """Archive and delete what ``retention`` no longer keeps; returns what it did."""
        with self._pool.borrow() as conn:
            return sqlite_retention.apply_retention(
                conn, Path(self._pool.path), retention, removed=self.on_removal
            )
