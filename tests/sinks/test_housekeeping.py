"""The SQLite sink's periodic jobs: alerts evaluated and notified by itself, retention run by itself."""

from __future__ import annotations

import sqlite3
import time
from datetime import timedelta
from pathlib import Path

from audit_middleware import Actor, Scope
from audit_middleware.model.actions import CATALOG
from audit_middleware.model.alerts import Alert, apply_overrides, default_rules
from audit_middleware.model.event import AuditEvent
from audit_middleware.model.ids import uuid7
from audit_middleware.sinks.housekeeping import ALERTS_JOB, RETENTION_JOB
from audit_middleware.sinks.sqlite import SQLiteSink
from audit_middleware.sqlite import alerts
from audit_middleware.sqlite.retention import SQLiteRetention
from tests.sinks.test_notify import Hook

RULES = apply_overrides(default_rules(), [("failed_logins_per_user", 2, None)])


def failed_login(at_ms: int | None = None) -> AuditEvent:
    at = time.time_ns() // 1_000_000 if at_ms is None else at_ms
    return AuditEvent(id=uuid7(at), unix_ms=at, action=CATALOG.get("login_failed"), actor=Actor(name="eve"),
                      tenant=Scope("acme"))  # fmt: skip


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_the_sink_evaluates_its_rules_and_calls_the_callback(tmp_path: Path):
    """Records emitted through the sink raise an alert, passed to on_alert, without any other call."""
    seen: list[Alert] = []
    sink = SQLiteSink(tmp_path / "a.sqlite3", alert_rules=RULES, on_alert=seen.append, alert_interval=0.1)
    try:
        sink.emit(failed_login())
        sink.emit(failed_login())
        assert wait_for(lambda: bool(seen))
        assert [(a.rule, dict(a.key)) for a in seen] == [("failed_logins_per_user", {"user": "eve"})]
    finally:
        sink.close()


def test_the_sink_posts_alerts_to_a_webhook(tmp_path: Path):
    """alert_webhook POSTs each new alert once to a real HTTP endpoint."""
    hook = Hook()
    sink = SQLiteSink(tmp_path / "a.sqlite3", alert_rules=RULES, alert_webhook=hook.url, alert_interval=0.1)
    try:
        sink.emit(failed_login())
        sink.emit(failed_login())
        assert wait_for(lambda: bool(hook.received))
        time.sleep(0.5)  # later evaluations must not post it again
        assert [body["alert"]["rule"] for _, _, body in hook.received] == ["failed_logins_per_user"]
    finally:
        sink.close()
        hook.close()


def test_a_failing_callback_never_breaks_the_writes_and_is_retried(tmp_path: Path, monkeypatch):
    """A callback that raises is logged; records keep being stored; the alert is handed out again later."""
    monkeypatch.setattr(alerts, "NOTIFY_CLAIM_MS", 200)
    calls: list[str] = []

    def flaky(alert: Alert) -> None:
        calls.append(alert.id)
        if len(calls) == 1:
            raise RuntimeError("pager down")

    sink = SQLiteSink(tmp_path / "a.sqlite3", alert_rules=RULES, on_alert=flaky, alert_interval=0.1)
    try:
        sink.emit(failed_login())
        sink.emit(failed_login())
        assert wait_for(lambda: len(calls) >= 2)
        assert calls[0] == calls[1]
        sink.emit(failed_login())
        assert sink.flush(5)
        conn = sqlite3.connect(sink.path)
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 3
        assert conn.execute("SELECT notified_ms IS NOT NULL, notify_attempts FROM alerts").fetchone() == (
            1,
            2,
        )
    finally:
        sink.close()


def test_the_sink_runs_retention_by_itself(tmp_path: Path):
    """With retention, old records are archived and deleted by the writing process, on its schedule."""
    sink = SQLiteSink(
        tmp_path / "a.sqlite3", retention=SQLiteRetention(tiers={"standard": timedelta(hours=1)})
    )
    try:
        sink.write([failed_login(at_ms=time.time_ns() // 1_000_000 - 2 * 3_600_000)])  # stored first
        sink.emit(failed_login())  # the first record through the queue starts the jobs
        conn = sqlite3.connect(sink.path)

        def runs() -> dict[str, int | None]:
            return dict(conn.execute("SELECT job, last_run_ms FROM maintenance").fetchall())

        assert wait_for(lambda: runs().get(RETENTION_JOB) is not None)
        assert conn.execute("SELECT count(*) FROM archives").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 1
        assert ALERTS_JOB not in runs()  # no alert rules: never scheduled
    finally:
        sink.close()


def test_jobs_are_shared_by_the_writers_of_one_file(tmp_path: Path):
    """Two sinks on one file: a job that one has just run is not due for the other."""
    path = tmp_path / "a.sqlite3"
    first = SQLiteSink(path, alert_rules=RULES, alert_interval=3600)
    second = SQLiteSink(path, alert_rules=RULES, alert_interval=3600)
    try:
        evaluated: list[str] = []
        for sink, name in ((first, "first"), (second, "second")):
            original = sink.housekeeping.evaluate_alerts

            def spy(now_ms=None, original=original, name=name):
                evaluated.append(name)
                return original(now_ms)

            sink.housekeeping.evaluate_alerts = spy  # type: ignore[method-assign]
        first.housekeeping.run_due()
        second.housekeeping.run_due()
        assert evaluated == ["first"]
    finally:
        first.close()
        second.close()
