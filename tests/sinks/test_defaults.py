"""The default sink, chosen from the environment."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from audit_middleware import config as audit_config
from audit_middleware import record
from audit_middleware.model.event import Actor, Resource
from audit_middleware.query.model import AuditQuery
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.sinks import JsonLinesSink
from audit_middleware.sinks.defaults import default_sink
from audit_middleware.sinks.opensearch.sink import OpenSearchSink
from audit_middleware.sinks.sqlite import SQLiteSink


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


def test_default_sink_falls_back_to_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unwritable store location does not break the host app: stdout, with one warning."""
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.delenv("AUDIT_OPENSEARCH_URL", raising=False)
    monkeypatch.delenv("AUDIT_LOG_FILE", raising=False)
    monkeypatch.setenv("AUDIT_SQLITE_PATH", str(tmp_path / "file" / "audit.sqlite3"))
    with pytest.warns(RuntimeWarning, match="standard output") as warned:
        sink = default_sink()
    assert isinstance(sink, JsonLinesSink)
    assert sink.path is None
    assert len(warned) == 1


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
