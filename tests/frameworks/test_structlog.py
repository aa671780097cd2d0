"""structlog integration: request context on log lines, and marked log events as audit records."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import LogCapture

from audit_middleware import Actor, Redactor, Resource, Scope, audit_context
from audit_middleware.capture.context import RequestContext, bind, current, unbind
from audit_middleware.config import AuditConfig, use_config
from audit_middleware.frameworks.structlog import AuditProcessor, add_audit_context
from tests.wsgi_support import request, simple_app

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def in_request() -> Iterator[RequestContext]:
    """A bound request context, as the middleware makes it."""
    context = RequestContext(
        method="POST",
        path="/pods/p1/restart",
        peer="192.0.2.5",
        user_agent_raw="curl/8",
        request_id_raw="req-9",
        traceparent=TRACEPARENT,
    )
    context.actor = Actor(id="42", email="ana@example.com")
    context.tenant = Scope("org-1")
    context.project = Scope("proj-2")
    token = bind(context)
    try:
        yield context
    finally:
        unbind(token)


@pytest.fixture
def chain() -> tuple[structlog.typing.FilteringBoundLogger, LogCapture]:
    """A logger whose lines run add_audit_context then AuditProcessor, captured as dicts."""
    capture = LogCapture()
    logger = structlog.wrap_logger(
        structlog.testing.ReturnLogger(),
        processors=[add_audit_context, AuditProcessor(), capture],
        wrapper_class=structlog.make_filtering_bound_logger(0),
    )
    return logger, capture


def test_add_audit_context_adds_request_facts(in_request):
    """Inside a request every line gets request id, method, path, client IP, trace, user and scopes."""
    line = add_audit_context(None, "info", {"event": "hello"})
    assert line == {
        "event": "hello",
        "http.request.id": "req-9",
        "http.request.method": "POST",
        "url.path": "/pods/p1/restart",
        "source.ip": "192.0.2.5",
        "trace.id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "user.id": "42",
        "user.email": "ana@example.com",
        "organization.id": "org-1",
        "audit.project.id": "proj-2",
    }


def test_add_audit_context_follows_the_redaction_policy(in_request, audit_sink):
    """With IP truncation and email pseudonyms configured, log lines get the blurred values too."""
    redactor = Redactor(truncate_ips=True, email_pseudonym_key=b"k" * 32)
    previous = use_config(AuditConfig(sink=audit_sink, redactor=redactor))
    try:
        line = add_audit_context(None, "info", {"event": "hello"})
    finally:
        use_config(previous)
    assert line["source.ip"] == "192.0.2.0"
    assert line["user.email"] == redactor.email("ana@example.com")


def test_add_audit_context_explicit_values_win(in_request):
    """A value bound explicitly on the line is kept (setdefault)."""
    line = add_audit_context(None, "info", {"event": "x", "user.id": "explicit", "source.ip": "10.9.9.9"})
    assert line["user.id"] == "explicit"
    assert line["source.ip"] == "10.9.9.9"
    assert line["http.request.id"] == "req-9"


def test_add_audit_context_outside_a_request_adds_nothing():
    """Outside a request the line is returned as it was."""
    assert current() is None
    assert add_audit_context(None, "info", {"event": "job ran", "n": 1}) == {"event": "job ran", "n": 1}


def test_add_audit_context_without_actor(in_request):
    """Before anyone is authenticated no user fields are invented."""
    in_request.actor = None
    line = add_audit_context(None, "info", {"event": "x"})
    assert "user.id" not in line
    assert "user.email" not in line


def test_add_audit_context_through_the_middleware(chain):
    """A log line written by the app inside a WSGI request carries that request's id."""
    logger, capture = chain
    request(
        simple_app(action=lambda environ: logger.info("handling")),
        "GET",
        "/pods",
        headers={"X-Request-ID": "req-mw"},
    )
    (line,) = capture.entries
    assert line["http.request.id"] == "req-mw"
    assert line["source.ip"] == "192.0.2.10"


def test_audit_processor_records_marked_events(audit_sink, chain):
    """log.info(..., audit="restart") becomes a record with resource, details and the message."""
    logger, capture = chain
    logger.info(
        "pod restarted",
        audit="restart",
        resource={"type": "pod", "id": "web-1", "name": "Web 1"},
        reason="deploy",
        attempt=2,
    )
    (event,) = audit_sink.events
    assert event.action.id == "restart"
    assert event.resource == Resource("pod", "web-1", "Web 1")
    assert event.details == {"reason": "deploy", "attempt": 2, "message": "pod restarted"}
    (line,) = capture.entries
    assert line["audit.event_id"] == event.id
    assert "audit" not in line
    assert line["event"] == "pod restarted"


def test_audit_processor_recognised_keys(audit_sink):
    """Outcome, actor, targets, tenant and project keys shape the record and are not details."""
    processor = AuditProcessor()
    processor(
        None,
        "info",
        {
            "event": "keys removed",
            "audit": "ssh_key_deleted",
            "resource": Resource("ssh_key", "k1"),
            "targets": [{"type": "project", "id": "p1"}],
            "outcome": "failure",
            "actor": {"id": "7", "kind": "api_token"},
            "tenant": "org-3",
            "project": Scope("p1"),
            "level": "info",
            "timestamp": "2024-01-01T00:00:00Z",
        },
    )
    (event,) = audit_sink.events
    assert event.outcome == "failure"
    assert event.actor == Actor(id="7", kind="api_token")
    assert event.targets == (Resource("project", "p1"),)
    assert event.tenant == Scope("org-3")
    assert event.project == Scope("p1")
    assert event.details == {"message": "keys removed"}


def test_audit_processor_details_keys(audit_sink):
    """details_keys limits which extra keys become details."""
    AuditProcessor(details_keys=["reason"])(
        None, "info", {"event": "m", "audit": "stop", "reason": "r", "noise": 1}
    )
    assert audit_sink.events[0].details == {"reason": "r", "message": "m"}


def test_unmarked_events_are_untouched(audit_sink, chain):
    """A line without audit= (or with audit=False) passes unchanged and records nothing."""
    logger, capture = chain
    logger.info("plain line", resource="not a resource")
    logger.info("opted out", audit=False)
    assert audit_sink.events == []
    assert capture.entries[0] == {"event": "plain line", "resource": "not a resource", "log_level": "info"}
    assert capture.entries[1]["audit"] is False
    assert "audit.event_id" not in capture.entries[0]


def test_direct_call_leaves_unmarked_dict_identical():
    """The processor returns the very same dict, unchanged, for an unmarked event."""
    event_dict = {"event": "x", "a": 1}
    assert AuditProcessor()(None, "info", event_dict) is event_dict
    assert event_dict == {"event": "x", "a": 1}


def test_audit_processor_inside_a_request(audit_sink, chain):
    """Inside a request the logged record replaces the automatic one and gets the request facts."""
    logger, _ = chain

    def handle(environ):
        logger.info("deleted", audit="delete", resource={"type": "pod", "id": "p7"})

    request(simple_app(action=handle), "DELETE", "/pods/p7")
    (event,) = audit_sink.events
    assert event.action.id == "delete"
    assert event.resource == Resource("pod", "p7")
    assert event.request is not None
    assert event.request.path == "/pods/p7"
    assert event.details["message"] == "deleted"


def test_malformed_audit_log_call_never_raises_and_warns_once(audit_sink, chain, monkeypatch):
    """A log call whose audit request is malformed still logs, records nothing, and warns once."""
    warnings: list[str] = []
    monkeypatch.setattr("audit_middleware.logs.warn", lambda message, **fields: warnings.append(message))
    logger, capture = chain
    for _ in range(3):
        logger.info("x", audit="update", resource={"id": "p-1"})  # no resource type
    logger.info("y", audit="create", resource=42)
    logger.info("z", audit="no_such_action")
    logger.info("w", audit="update", actor={"nickname": "ann"})
    logger.info("v", audit="update", changes={"before": 1})
    assert audit_sink.events == []
    assert [entry["event"] for entry in capture.entries] == ["x", "x", "x", "y", "z", "w", "v"]
    assert all("audit.error" in entry and "audit.event_id" not in entry for entry in capture.entries)
    assert capture.entries[0]["audit"] == "update"  # the line still says what was asked
    assert len(warnings) == 5, warnings  # the repeated call is reported once
    assert "resource" in warnings[0]


def test_context_outside_requests_is_on_log_lines() -> None:
    """In an audit_context() the job's actor, tenant and request id go on every line."""
    with audit_context(actor=Actor(id="cron", email="ops@acme.example"), tenant="acme", request_id="req-7"):
        line = add_audit_context(None, "info", {"event": "imported"})
    assert line["user.id"] == "cron"
    assert line["organization.id"] == "acme"
    assert line["http.request.id"] == "req-7"
    assert add_audit_context(None, "info", {"event": "bare"}) == {"event": "bare"}
