"""The hand-off to a sink: the processing stage first, then emit, and the private last resort when emit
fails; the delivery pipeline that runs it off the request thread."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from audit_middleware import Resource, configure, record
from audit_middleware.model.event import Actor, AuditEvent, ChangeSet, RequestFacts
from audit_middleware.processing.redaction import Redactor
from audit_middleware.sinks import MemorySink, Sink
from audit_middleware.sinks.delivery import PIPELINE, Pipeline, deliver
from tests.query.conftest import make_event
from tests.wsgi_support import request, simple_app


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


class ThreadNoting(MemorySink):
    """Notes the thread each emit() ran on."""

    def __init__(self, *, durable: bool = False) -> None:
        super().__init__()
        self.durable = durable
        self.threads: list[threading.Thread] = []

    def emit(self, event: AuditEvent) -> None:
        self.threads.append(threading.current_thread())
        super().emit(event)


class PlainSink(Sink):
    """A user's own sink with a flush() of its own: it only appends."""

    def __init__(self) -> None:
        self.kept: list[AuditEvent] = []

    def emit(self, event: AuditEvent) -> None:
        self.kept.append(event)

    def flush(self, timeout: float | None = None) -> bool:
        return True


def test_a_request_record_is_emitted_on_the_delivery_thread_redacted() -> None:
    """The request thread hands its record over: emit runs on the delivery worker, with secrets masked."""
    sink = ThreadNoting()
    configure(sink=sink)
    request(simple_app(action=lambda _env: record("create", details={"password": "p4ss"})))
    (event,) = sink.events
    assert sink.threads == [PIPELINE._thread]
    assert sink.threads[0] is not threading.current_thread()
    assert event.details == {"password": "[REDACTED]"}


def test_a_durable_sink_gets_the_record_before_the_response_ends() -> None:
    """durable=True: the record is delivered on the request thread, so it is safe when the response ends."""
    sink = ThreadNoting(durable=True)
    configure(sink=sink)
    request(simple_app())
    assert sink.threads == [threading.current_thread()]


def test_a_user_sinks_flush_waits_for_the_records_made_before() -> None:
    """A sink's own flush() is wrapped: after it, every record made before is in the sink."""
    sink = PlainSink()
    configure(sink=sink)
    for _ in range(50):
        request(simple_app())
    assert sink.flush()
    assert len(sink.kept) == 50


def test_a_record_outside_a_request_comes_after_the_queued_ones() -> None:
    """record() outside a request is delivered at once, after the request records queued before it."""
    sink = PlainSink()
    configure(sink=sink)
    for _ in range(20):
        request(simple_app())
    late = record("restart", resource=Resource("pod", "p1"))
    assert sink.kept[-1] is late
    assert len(sink.kept) == 21


def test_an_ending_process_finishes_records_on_the_callers_thread() -> None:
    """After persist() (SIGTERM, exit) nothing waits in the queue: later requests are delivered inline."""
    sink = ThreadNoting()
    configure(sink=sink)
    try:
        request(simple_app())
        assert PIPELINE.persist(timeout=5)
        request(simple_app())
        assert len(sink.threads) == 2
        assert sink.threads[1] is threading.current_thread()
    finally:
        PIPELINE.resume()


def test_a_full_queue_makes_the_caller_do_the_work() -> None:
    """Back-pressure: with the queue full the work runs on the caller's thread, never dropped."""
    pipeline = Pipeline()
    pipeline.max_queue = 1
    done: list[str] = []
    gate = threading.Event()
    taken = threading.Event()

    def slow(work: object) -> None:
        taken.set()
        gate.wait(5)
        done.append(f"worker:{work}")

    pipeline.submit(slow, "first")  # the worker takes it and waits at the gate
    assert taken.wait(5), "the worker never took the first item"
    pipeline.submit(slow, "queued")  # fills the queue of one
    ran_here: list[str] = []
    pipeline.submit(lambda work: ran_here.append(str(work)), "third")
    gate.set()
    assert pipeline.flush(5)
    assert ran_here == ["third"]
    assert done == ["worker:first", "worker:queued"]
    pipeline.stop(1)
