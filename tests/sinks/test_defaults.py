"""The default sink, chosen from the environment."""

from __future__ import annotations

import os
import sqlite3
import stat
import tempfile
from pathlib import Path

import pytest

from audit_middleware import config as audit_config
from audit_middleware import env, record
from audit_middleware.errors import AuditValidationError, SinkSetupError
from audit_middleware.model.alerts import default_rules
from audit_middleware.model.event import Actor, Resource
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.query.model import AuditQuery
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.sinks import JsonLinesSink
from audit_middleware.sinks.defaults import default_retention, default_sink
from audit_middleware.sinks.notify import WebhookNotifier, log_alert
from audit_middleware.sinks.opensearch.sink import OpenSearchSink
from audit_middleware.sinks.sqlite import SQLiteSink
from tests.spool_support import spooled_kinds
from tests.wsgi_support import request, simple_app


def _connect(target: SQLiteStore | SQLiteSink) -> sqlite3.Connection:
    return sqlite3.connect(target.path)


def test_default_sink_is_the_sqlite_sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an OpenSearch URL, records go to the SQLite file at AUDIT_SQLITE_PATH."""
    monkeypatch.delenv("AUDIT_OPENSEARCH_URL", raising=False)
    monkeypatch.delenv("AUDIT_LOG_FILE", raising=False)
    monkeypatch.setenv("AUDIT_SQLITE_PATH", str(tmp_path / "default.sqlite3"))
    sink = default_sink()
    try:
        assert isinstance(sink, SQLiteSink)
        assert sink.path == tmp_path / "default.sqlite3"
    finally:
        sink.close()


def test_an_unusable_store_falls_back_to_a_private_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fallback_dir: Path
) -> None:
    """An unwritable store location does not break the host app: a private, searchable store (with
    the alert rules and retention), one warning."""
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.delenv("AUDIT_OPENSEARCH_URL", raising=False)
    monkeypatch.delenv("AUDIT_LOG_FILE", raising=False)
    monkeypatch.setenv("AUDIT_SQLITE_PATH", str(tmp_path / "file" / "audit.sqlite3"))
    with pytest.warns(RuntimeWarning, match="private SQLite store") as warned:
        sink = default_sink()
    try:
        assert isinstance(sink, SQLiteSink)
        assert sink.path == fallback_dir / "audit.sqlite3"
        assert stat.S_IMODE(fallback_dir.stat().st_mode) == 0o700
        assert len(warned) == 1
        # the store used instead keeps the product's promises too
        assert sink.housekeeping.alert_rules == default_rules()
        assert sink.housekeeping.retention is not None
    finally:
        sink.close()


def test_an_unusable_log_file_falls_back_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AUDIT_LOG_FILE under a regular file does not break the app either."""
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.delenv("AUDIT_OPENSEARCH_URL", raising=False)
    monkeypatch.setenv("AUDIT_LOG_FILE", str(tmp_path / "file" / "audit.jsonl"))
    with pytest.warns(RuntimeWarning, match="private SQLite store"):
        sink = default_sink()
    sink.close()
    assert isinstance(sink, SQLiteSink)


def test_an_unusable_spool_dir_never_breaks_a_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """AUDIT_OPENSEARCH_URL with AUDIT_SPOOL_DIR under a regular file: the first request (which builds
    the default configuration) succeeds, one warning names the problem, and its record is spooled."""
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv("AUDIT_OPENSEARCH_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AUDIT_SPOOL_DIR", str(tmp_path / "file" / "state"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    audit_config.use_config(None)  # no configure(): the request builds the default (the fixture restores)
    with pytest.warns(RuntimeWarning, match="state directory") as warned:
        response = request(simple_app(status="201 Created"), "POST", "/pods")
    assert response.code == 201
    assert len(warned) == 1
    sink = audit_config.get_config().sink
    assert isinstance(sink, OpenSearchSink)
    assert sink.state_dir == tmp_path / "tmp" / f"audit-middleware-{os.getuid()}"
    sink.close(timeout=1)
    assert spooled_kinds(env.spool_dir(sink.state_dir)) == (1, 1)  # the record and its final checkpoint
    assert capsys.readouterr().err == ""


def test_an_explicit_sink_with_an_unusable_state_dir_fails_at_start_up(tmp_path: Path) -> None:
    """OpenSearchSink(state_dir=...) that cannot be used raises a clear error when it is built."""
    (tmp_path / "file").write_text("not a directory")
    settings = ConnectionSettings(urls=("http://127.0.0.1:9",))
    with pytest.raises(SinkSetupError, match="AUDIT_SPOOL_DIR"):
        OpenSearchSink(settings=settings, state_dir=tmp_path / "file" / "state")


def test_default_sink_with_a_log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AUDIT_LOG_FILE still selects the JSON-lines file."""
    monkeypatch.delenv("AUDIT_OPENSEARCH_URL", raising=False)
    monkeypatch.setenv("AUDIT_LOG_FILE", str(tmp_path / "audit.jsonl"))
    sink = default_sink()
    try:
        assert isinstance(sink, JsonLinesSink)
        assert sink.path == tmp_path / "audit.jsonl"
    finally:
        sink.close()


def test_default_sink_with_opensearch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """AUDIT_OPENSEARCH_URL selects the OpenSearch sink."""
    monkeypatch.setenv("AUDIT_OPENSEARCH_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AUDIT_SPOOL_DIR", str(tmp_path / "spool"))
    sink = default_sink()
    try:
        assert isinstance(sink, OpenSearchSink)
    finally:
        sink.close(timeout=1)


def test_recorded_events_reach_the_default_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """record() with the default configuration ends up searchable in the SQLite file."""
    monkeypatch.delenv("AUDIT_OPENSEARCH_URL", raising=False)
    monkeypatch.delenv("AUDIT_LOG_FILE", raising=False)
    monkeypatch.setenv("AUDIT_SQLITE_PATH", str(tmp_path / "default.sqlite3"))
    audit_config.use_config(None)  # the autouse fixture restores its own afterwards
    event = record("restart", resource=Resource("pod", "p", "web-9"), tenant="acme", actor=Actor(id="u1"))
    sink = audit_config.get_config().sink
    assert isinstance(sink, SQLiteSink)
    assert sink.flush(timeout=10)
    with SQLiteStore(sink.path) as store:
        found = store.search(AuditQuery.build("acme", search="web-9")).events
    assert [e.id for e in found] == [event.id]


def test_the_default_store_evaluates_the_alerts_and_applies_retention(tmp_path: Path, monkeypatch) -> None:
    """The embedded default keeps the product's promises: the four alerts and 90-day retention."""
    monkeypatch.delenv("AUDIT_OPENSEARCH_URL", raising=False)
    monkeypatch.delenv("AUDIT_LOG_FILE", raising=False)
    monkeypatch.delenv("AUDIT_SQLITE_RETENTION_DAYS", raising=False)
    monkeypatch.delenv("AUDIT_ALERT_WEBHOOK", raising=False)
    monkeypatch.setenv("AUDIT_SQLITE_PATH", str(tmp_path / "default.sqlite3"))
    sink = default_sink()
    try:
        assert isinstance(sink, SQLiteSink)
        assert sink.housekeeping.alert_rules == default_rules()
        assert sink.housekeeping.notifiers == (log_alert,)
        assert sink.housekeeping.retention is not None
        assert sink.housekeeping.retention.retention_ms("standard") == 90 * 86_400_000
    finally:
        sink.close()
    monkeypatch.setenv("AUDIT_ALERT_WEBHOOK", "https://hooks.example.com/x")
    monkeypatch.setenv("AUDIT_SQLITE_RETENTION_DAYS", "30")
    monkeypatch.setenv("AUDIT_SQLITE_ARCHIVE_DIR", str(tmp_path / "archive"))
    sink = default_sink()
    try:
        assert isinstance(sink, SQLiteSink)
        (notifier,) = sink.housekeeping.notifiers
        assert isinstance(notifier, WebhookNotifier)
        retention = sink.housekeeping.retention
        assert retention is not None
        assert retention.retention_ms("standard") == 30 * 86_400_000
        assert retention.archive_dir == str(tmp_path / "archive")
    finally:
        sink.close()


def test_default_retention_can_be_turned_off_and_refuses_nonsense(monkeypatch) -> None:
    """AUDIT_SQLITE_RETENTION_DAYS=off keeps records forever; a non-number is a clear error."""
    monkeypatch.setenv("AUDIT_SQLITE_RETENTION_DAYS", "off")
    assert default_retention() is None
    monkeypatch.setenv("AUDIT_SQLITE_RETENTION_DAYS", "ninety")
    with pytest.raises(AuditValidationError, match="number of days or 'off'"):
        default_retention()


def test_unusable_housekeeping_settings_cost_only_themselves(tmp_path: Path, monkeypatch) -> None:
    """A bad webhook URL or retention value warns and is left out; records go to the configured store."""
    monkeypatch.delenv("AUDIT_OPENSEARCH_URL", raising=False)
    monkeypatch.delenv("AUDIT_LOG_FILE", raising=False)
    monkeypatch.setenv("AUDIT_SQLITE_PATH", str(tmp_path / "default.sqlite3"))
    monkeypatch.setenv("AUDIT_ALERT_WEBHOOK", "ftp://hooks.example.com/x")
    monkeypatch.setenv("AUDIT_SQLITE_RETENTION_DAYS", "ninety")
    with pytest.warns(RuntimeWarning) as warned:
        sink = default_sink()
    try:
        assert isinstance(sink, SQLiteSink)
        assert sink.path == tmp_path / "default.sqlite3"
        assert sink.housekeeping.notifiers == (log_alert,)
        assert sink.housekeeping.retention is None, "nothing is deleted by a guess"
        assert sink.housekeeping.alert_rules == default_rules()
        messages = [str(warning.message) for warning in warned]
        assert any("AUDIT_ALERT_WEBHOOK" in message for message in messages)
        assert any("AUDIT_SQLITE_RETENTION_DAYS" in message for message in messages)
    finally:
        sink.close()
