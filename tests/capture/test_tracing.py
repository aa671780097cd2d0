"""OpenTelemetry correlation: trace.id and span.id from the active span, in and outside requests."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("opentelemetry.sdk.trace")

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from audit_middleware import record
from audit_middleware.capture.tracing import active_span
from tests.wsgi_support import request, simple_app

TRACER = TracerProvider().get_tracer("audit-middleware-tests")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _ids(span: trace.Span) -> tuple[str, str]:
    context = span.get_span_context()
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def test_no_active_span_no_ids():
    """Without an active span (or with the API's no-op span) there is nothing to correlate."""
    assert active_span() is None


def test_without_opentelemetry_nothing_is_read(monkeypatch):
    """An app that never imported OpenTelemetry pays one lookup and gets no ids."""
    monkeypatch.delitem(sys.modules, "opentelemetry.trace")
    with TRACER.start_as_current_span("job"):
        assert active_span() is None


def test_request_record_carries_the_active_spans_ids(audit_sink):
    """A request handled under a span: its record has that span's trace and span id, not traceparent's."""
    with TRACER.start_as_current_span("POST /pods") as span:
        request(simple_app(), "POST", "/pods", headers={"traceparent": TRACEPARENT})
    (event,) = audit_sink.events
    assert event.request is not None
    assert (event.request.trace_id, event.request.span_id) == _ids(span)
    document = event.to_document()
    assert document["trace"]["id"] == _ids(span)[0]
    assert document["span"]["id"] == _ids(span)[1]


def test_without_a_span_traceparent_still_gives_the_trace_id(audit_sink):
    """No active span: the trace id comes from traceparent and there is no span id."""
    request(simple_app(), "POST", "/pods", headers={"traceparent": TRACEPARENT})
    (event,) = audit_sink.events
    assert event.request is not None
    assert (event.request.trace_id, event.request.span_id) == ("4bf92f3577b34da6a3ce929d0e0e4736", None)


def test_record_outside_a_request_under_a_span(audit_sink):
    """A job's record made under a span carries its ids."""
    with TRACER.start_as_current_span("nightly") as span:
        record("restart")
    (event,) = audit_sink.events
    assert event.request is not None
    assert (event.request.trace_id, event.request.span_id) == _ids(span)


def test_a_broken_tracer_costs_only_the_ids(monkeypatch):
    """get_current_span raising makes active_span() None, never an error."""

    def broken() -> None:
        raise RuntimeError("tracer gone")

    monkeypatch.setattr(trace, "get_current_span", broken)
    assert active_span() is None
