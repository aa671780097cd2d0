"""Reads recorded as audit events: an export records itself into the sink it is given."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit_middleware.model.event import NO_TENANT, Actor, AuditEvent, Resource
from audit_middleware.query.model import AuditQuery
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.reads import export_audited, record_read
from audit_middleware.sinks import MemorySink
from audit_middleware.sinks.sqlite import SQLiteSink
from tests.query.conftest import make_event


@pytest.fixture
def filled_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    """A store with three acme events and one globex event."""
    with SQLiteSink(tmp_path / "audit.sqlite3") as sink:
        sink.write([make_event("create", ago_ms=index) for index in range(3)])
        sink.write([make_event("create", tenant="globex")])
    with SQLiteStore(tmp_path / "audit.sqlite3") as store:
        yield store


def test_the_export_is_audited_into_the_given_sink(filled_store: SQLiteStore, audit_sink: MemorySink) -> None:
    """export_audited records who exported what (filters, format, row count) into its sink only."""
    sink = MemorySink()
    actor = Actor(id="u1", email="ann@example.com")
    query = AuditQuery.build("acme", action="create", search="x")
    rows = export_audited(
        filled_store, AuditQuery.build("acme", action="create"), io.BytesIO(), sink, actor=actor
    )
    assert rows == 3
    export_audited(filled_store, query, io.BytesIO(), sink, actor=actor, format="ndjson")
    first, second = sink.events
    assert first.action.id == "audit_exported"
    assert first.actor == actor
    assert first.tenant is not None
    assert first.tenant.id == "acme"
    assert first.resource == Resource("audit_log")
    assert first.outcome == "success"
    assert first.details == {"filters": {"tenant": "acme", "actions": ["create"]}, "format": "csv", "rows": 3}
    assert second.details["filters"]["text"] == "x"
    assert second.details["rows"] == 0
    assert audit_sink.events == [], "the process-wide configuration is not used"


def test_a_failed_export_is_audited_too(filled_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """An export that breaks off is recorded as a failure, with how far it got."""

    def broken(query: AuditQuery) -> Iterator[AuditEvent]:
        yield make_event("create")
        raise OSError("disk full")

    sink = MemorySink()
    monkeypatch.setattr(filled_store, "iterate", broken)
    with pytest.raises(OSError, match="disk full"):
        export_audited(filled_store, AuditQuery(tenant="acme"), io.BytesIO(), sink, actor=Actor(name="ann"))
    [event] = sink.events
    assert event.action.id == "audit_exported"
    assert event.outcome == "failure"
    assert event.details["rows"] == 1
    assert event.details["error"] == "OSError"


def test_read_records_are_redacted_like_any_other() -> None:
    """A read record passes the processing stage: secrets in its details are masked."""
    sink = MemorySink()
    details = {"api_key": "k-123"}
    record_read(sink, "audit_exported", actor=Actor(name="ann"), tenant=NO_TENANT, details=details)
    [event] = sink.events
    assert event.details == {"api_key": "[REDACTED]"}
    assert event.tenant is None, "the no-tenant marker is not stored as a tenant"
