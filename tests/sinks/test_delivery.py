"""The hand-off to a sink: the processing stage first, then emit, and the private last resort when emit
fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit_middleware.model.event import Actor, AuditEvent, ChangeSet, RequestFacts
from audit_middleware.processing.redaction import Redactor
from audit_middleware.sinks import MemorySink
from audit_middleware.sinks.delivery import deliver
from tests.query.conftest import make_event


class Snapshotting(MemorySink):
    """Keeps the stored document of each event as it was at the moment emit() was called."""

    def __init__(self) -> None:
        super().__init__()
        self.at_emit: list[dict[str, object]] = []

    def emit(self, event: AuditEvent) -> None:
        self.at_emit.append(event.to_document())
        super().emit(event)


class Failing(MemorySink):
    def emit(self, event: AuditEvent) -> None:
        raise ConnectionError("sink unreachable")


def test_the_sink_sees_only_the_redacted_record() -> None:
    """Details, change values, emails and IPs are processed before the sink's emit() runs."""
    sink = Snapshotting()
    event = make_event(
        "update",
        user=Actor(id="u1", email="ann@example.com"),
        details={"api_key": "k-1", "reason": "rotation"},
        changes=ChangeSet({"password": "old"}, {"password": "new"}, ("password",)),
        request=RequestFacts(method="POST", path="/x", client_ip="203.0.113.77"),
    )
    deliver(event, sink, Redactor(truncate_ips=True, email_pseudonym_key=b"k" * 32))
    [document] = sink.at_emit
    text = str(document)
    for secret in ("k-1", "old", "new", "ann@example.com", "203.0.113.77"):
        assert secret not in text
    assert document["audit"]["details"] == {"api_key": "[REDACTED]", "reason": "rotation"}  # type: ignore[index]
    assert document["source"] == {"ip": "203.0.113.0"}
    assert sink.events == [event], "the sink receives the event itself, once"


def test_a_failing_sink_costs_neither_the_record_nor_the_caller(
    capsys: pytest.CaptureFixture[str], fallback_dir: Path
) -> None:
    """When emit() raises, deliver() returns normally and the redacted record is in the private
    last-resort file, one line with the error; stderr carries no record."""
    event = make_event("create", details={"secret": "s-1"})
    deliver(event, Failing(), Redactor())
    [kept] = (fallback_dir / "other").glob("*.jsonl")
    [line] = kept.read_text(encoding="utf-8").splitlines()
    assert event.id in line
    assert "sink unreachable" in line
    assert "s-1" not in line
    assert event.id not in capsys.readouterr().err


def test_a_record_that_cannot_be_redacted_reaches_the_sink_without_its_secrets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Redaction failing on an app's value neither leaks the value to stderr nor loses the record."""
    sink = Snapshotting()
    bad = ChangeSet({"password": "hunter2"}, {"password": "hunter3"}, (1,))  # type: ignore[arg-type]
    event = make_event("update", changes=bad)
    deliver(event, sink, Redactor())
    assert capsys.readouterr().err == ""
    [document] = sink.at_emit
    assert document["event"]["id"] == event.id  # type: ignore[index]
    assert "hunter" not in str(document)


def test_nothing_is_written_to_stderr_when_the_sink_takes_the_record(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A working sink leaves the last resort unused."""
    sink = MemorySink()
    deliver(make_event("create"), sink, Redactor())
    assert capsys.readouterr().err == ""
    assert len(sink.events) == 1
