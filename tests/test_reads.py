"""Reads recorded as audit events: an export records itself into the sink it is given."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit_middleware.model.encoding import dumps
from audit_middleware.model.event import NO_TENANT, Actor, RequestFacts, Resource
from audit_middleware.processing.redaction import Redactor
from audit_middleware.query.model import AuditQuery
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.reads import READ_ACTIONS, export_audited, export_stream_audited, record_read
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

    def broken(query: AuditQuery) -> Iterator[str]:  # the export reads the stored documents
        yield dumps(make_event("create").to_document()).decode()
        raise OSError("disk full")

    sink = MemorySink()
    monkeypatch.setattr(filled_store, "documents", broken)
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


def test_a_read_record_names_the_tenant_and_the_outcome_given() -> None:
    """record_read() returns the event it delivered: the tenant as a scope, the outcome as given."""
    sink = MemorySink()
    event = record_read(
        sink, "audit_exported", actor=Actor(id="u1"), tenant="acme", details={"rows": 0}, outcome="failure"
    )
    assert sink.events == [event]
    assert event.tenant is not None
    assert event.tenant.id == "acme"
    assert event.outcome == "failure"
    assert event.resource == Resource("audit_log")


def test_the_given_redactor_applies_to_the_export_record(filled_store: SQLiteStore) -> None:
    """export_audited passes its redactor to the processing stage: the app's own keys are masked too."""
    sink = MemorySink()
    query = AuditQuery.build("acme", search="ticket-7")
    redactor = Redactor(extra_keys=["text"])
    export_audited(filled_store, query, io.BytesIO(), sink, actor=Actor(name="ann"), redactor=redactor)
    [event] = sink.events
    assert event.details["filters"]["text"] == "[REDACTED]"


def test_a_streamed_export_is_the_same_file_and_is_audited_at_its_end(filled_store: SQLiteStore) -> None:
    """export_stream_audited yields what write_export writes, and records once the last chunk is taken."""
    sink = MemorySink()
    query = AuditQuery.build("acme")
    facts = RequestFacts(method="POST", path="/audit/export", client_ip="192.0.2.1", user_agent="UA")
    chunks = export_stream_audited(filled_store, query, sink, actor=Actor(name="ann"), request=facts)
    first = next(chunks)
    assert first.startswith(b"timestamp,user,")
    assert sink.events == [], "nothing is recorded before the export ends"
    streamed = first + b"".join(chunks)
    written = io.BytesIO()
    export_audited(filled_store, query, written, MemorySink(), actor=Actor(name="ann"))
    assert streamed == written.getvalue()
    [event] = sink.events
    assert (event.action.id, event.outcome, event.details["rows"]) == ("audit_exported", "success", 3)
    assert event.request is not None
    assert event.request.client_ip == "192.0.2.1"


def test_a_cancelled_streamed_export_is_recorded_as_a_failure(filled_store: SQLiteStore) -> None:
    """A download closed before its end is recorded, with outcome failure and the rows sent."""
    sink = MemorySink()
    chunks = export_stream_audited(filled_store, AuditQuery.build("acme"), sink, actor=Actor(name="ann"))
    next(chunks)
    chunks.close()
    [event] = sink.events
    assert event.outcome == "failure"
    assert event.details["error"] == "closed before the end"


def test_an_entry_read_names_the_entry() -> None:
    """record_read with entry_id records the audit_log resource of that entry."""
    sink = MemorySink()
    record_read(sink, "audit_viewed", actor=Actor(name="ann"), tenant="acme", details={}, entry_id="e-1")
    assert sink.events[0].resource == Resource("audit_log", "e-1")
    assert set(READ_ACTIONS) == {"audit_viewed", "audit_exported"}
