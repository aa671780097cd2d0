"""The WSGI middleware, every request checked by wsgiref.validate on both sides."""

from __future__ import annotations

import contextvars
import gc
import sys
import threading
import warnings
from dataclasses import replace
from wsgiref.validate import WSGIWarning

import pytest

import audit_middleware
from audit_middleware import Actor, Resource, Rule, config, configure, current, record, set_actor
from audit_middleware.capture import wsgi
from audit_middleware.capture.clientip import ProxyTrust
from audit_middleware.capture.context import in_request, opened
from audit_middleware.capture.derive import RawRequestJob
from audit_middleware.capture.wsgi import AuditMiddleware
from tests.worker_support import building_threads
from tests.wsgi_support import make_environ, request, serve, serve_unguarded, simple_app, wrap

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_harness_turns_wsgi_warnings_into_errors():
    """The validator check is live: an app breaking a WSGI rule fails the request."""
    with pytest.raises(WSGIWarning, match="three-digit integer followed by a single space"):
        request(simple_app(status="200"))


def test_harness_checks_the_middleware_side():
    """The outer validator checks what the middleware gives the server (here: a broken environ)."""
    environ = make_environ()
    del environ["QUERY_STRING"]
    with pytest.raises(WSGIWarning, match="QUERY_STRING"):
        serve(simple_app(), environ)


@pytest.mark.parametrize(
    ("method", "action"), [("POST", "create"), ("PUT", "update"), ("PATCH", "update"), ("DELETE", "delete")]
)
def test_state_changing_request_makes_one_event(audit_sink, method, action):
    """POST/PUT/PATCH/DELETE produce exactly one event with the request's facts."""
    response = request(
        simple_app("201 Created"),
        method,
        "/pods/p-1",
        headers={"User-Agent": "curl/8.5.0", "X-Request-ID": "req-123"},
    )
    assert response.code == 201
    (event,) = audit_sink.events
    assert event.action.id == action
    assert event.outcome == "success"
    assert event.resource == Resource("pods", "p-1")
    facts = event.request
    assert facts is not None
    assert facts.method == method
    assert facts.path == "/pods/p-1"
    assert facts.status_code == 201
    assert facts.request_id == "req-123"
    assert facts.user_agent == "curl/8.5.0"
    assert facts.client_ip == "192.0.2.10"


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_safe_methods_make_no_event(audit_sink, method):
    """GET, HEAD and OPTIONS are not audited without a rule."""
    assert request(simple_app(), method, "/pods").code == 200
    assert audit_sink.events == []


def test_get_with_a_rule_is_audited(audit_sink):
    """A GET named by a rule produces its event."""
    configure(
        sink=audit_sink,
        rules=[Rule("GET", "/audit/export", action="audit_exported", resource_type="audit_log")],
    )
    request(simple_app(), "GET", "/audit/export")
    request(simple_app(), "GET", "/audit/other")
    (event,) = audit_sink.events
    assert event.action.id == "audit_exported"


def test_script_name_is_part_of_the_path(audit_sink):
    """An app mounted under SCRIPT_NAME records the full path."""
    serve(simple_app(), make_environ("POST", "/pods", SCRIPT_NAME="/api"))
    (event,) = audit_sink.events
    assert event.request is not None
    assert event.request.path == "/api/pods"


class BoomError(Exception):
    """The app's own error."""


def test_app_exception_is_recorded_as_500_and_re_raised(audit_sink):
    """An exception from the app gives a 500 failure record and reaches the server untouched."""
    error = BoomError("database gone")

    def app(environ, start_response):
        raise error

    with pytest.raises(BoomError) as raised:
        request(app, "POST", "/pods")
    assert raised.value is error
    (event,) = audit_sink.events
    assert event.outcome == "failure"
    assert event.request is not None
    assert event.request.status_code == 500
    assert current() is None


def test_app_exception_after_explicit_record(audit_sink):
    """A record() made before the app raised is kept and marked as failed."""

    def app(environ, start_response):
        record("delete", resource=Resource("pod", "x"))
        raise BoomError

    with pytest.raises(BoomError):
        request(app, "DELETE", "/pods/x")
    (event,) = audit_sink.events
    assert event.action.id == "delete"
    assert event.outcome == "failure"


def test_app_exception_on_get_is_not_audited(audit_sink):
    """A failing GET without a rule is re-raised and still not audited."""

    def app(environ, start_response):
        raise BoomError

    with pytest.raises(BoomError):
        request(app, "GET", "/pods")
    assert audit_sink.events == []


def test_generator_raising_mid_iteration(audit_sink):
    """A streamed body that raises after the first chunk yields a failure record and re-raises."""
    closed: list[bool] = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            try:
                yield b"first"
                raise BoomError("stream broke")
            finally:
                closed.append(True)

        return body()

    with pytest.raises(BoomError, match="stream broke"):
        request(app, "POST", "/exports")
    (event,) = audit_sink.events
    assert event.outcome == "failure"
    assert event.request is not None
    assert event.request.status_code == 500
    assert closed == [True]
    assert current() is None


class ClosingBody:
    """A response iterable that counts close() calls."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = iter(chunks)
        self.closes = 0

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        self.closes += 1


def test_close_sends_the_record_once(audit_sink):
    """The record is sent once when the response ends, and the app's close() is called once."""
    body = ClosingBody([b"a", b"b"])

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    response = request(app, "POST", "/pods")
    assert response.body == b"ab"
    assert body.closes == 1
    assert len(audit_sink.events) == 1


def test_close_without_full_iteration(audit_sink):
    """A server that stops reading (client gone) and closes still gets exactly one record."""
    body = ClosingBody([b"a", b"b", b"c"])

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    stack = wrap(app)
    with warnings.catch_warnings():
        warnings.simplefilter("error", WSGIWarning)
        result = stack(make_environ("PUT", "/pods/1"), lambda status, headers, exc_info=None: None)
        assert next(iter(result)) == b"a"
        assert audit_sink.events == []
        result.close()
    assert body.closes == 1
    (event,) = audit_sink.events
    assert event.action.id == "update"
    assert current() is None


def test_record_inside_a_streamed_body(audit_sink):
    """The request context is current while the body generator runs: record() there works."""
    seen: list[object] = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            seen.append(current())
            yield b"exporting"
            set_actor(Actor(id="streamer"))
            record("audit_exported", resource=Resource("audit_log"))
            yield b"done"

        return body()

    response = request(app, "POST", "/audit/export")
    assert response.body == b"exportingdone"
    assert seen[0] is not None
    (event,) = audit_sink.events
    assert event.action.id == "audit_exported"
    assert event.actor.id == "streamer"
    assert current() is None


def test_start_response_called_lazily_in_generator(audit_sink):
    """An app that calls start_response only when its body is first iterated is recorded with that status."""

    def app(environ, start_response):
        def body():
            start_response("202 Accepted", [("Content-Type", "text/plain")])
            yield b"later"

        return body()

    assert request(app, "POST", "/jobs").code == 202
    (event,) = audit_sink.events
    assert event.request is not None
    assert event.request.status_code == 202


def test_start_response_with_exc_info(audit_sink):
    """An app that handles its error and answers 500 with exc_info is recorded as a failure."""

    def fail() -> None:
        raise BoomError

    def app(environ, start_response):
        try:
            fail()
        except BoomError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"sorry"]

    assert request(app, "POST", "/pods").code == 500
    (event,) = audit_sink.events
    assert event.outcome == "failure"


def test_invalid_utf8_in_path(audit_sink):
    """A PATH_INFO carrying invalid UTF-8 (latin-1 decoded bytes) is recorded with U+FFFD."""
    raw_path = b"/pods/caf\xc3\xa9/\xff\xfe".decode("latin-1")
    response = request(simple_app(), "POST", raw_path)
    assert response.code == 200
    (event,) = audit_sink.events
    assert event.request is not None
    assert event.request.path == "/pods/café/\ufffd\ufffd"
    event.to_document()


def test_invalid_utf8_in_headers(audit_sink):
    """Headers with high bytes (PEP 3333 latin-1 strings) are decoded safely or ignored."""
    headers = {
        "User-Agent": b"agent \xe2\x9c\x93 \xff\xc0".decode("latin-1"),
        "X-Request-ID": b"id-\xff".decode("latin-1"),
        "X-Forwarded-For": b"\xff\xfe, 1.2.3.4".decode("latin-1"),
        "Forwarded": b'for="\xff"'.decode("latin-1"),
        "Traceparent": b"00-\xff".decode("latin-1"),
    }
    assert request(simple_app(), "POST", "/pods", headers=headers).code == 200
    (event,) = audit_sink.events
    facts = event.request
    assert facts is not None
    assert facts.user_agent == "agent \u2713 \ufffd\ufffd"
    assert facts.request_id is not None
    assert facts.request_id != "id-\xff"
    assert facts.client_ip == "192.0.2.10"
    assert facts.trace_id is None


def test_giant_user_agent_is_truncated_with_marker(audit_sink):
    """A 64 KB user agent is cut to the configured limit with a marker saying how much was dropped."""
    agent = "A" * 65536
    request(simple_app(), "POST", "/pods", headers={"User-Agent": agent})
    (event,) = audit_sink.events
    assert event.request is not None
    user_agent = event.request.user_agent or ""
    limit = config.get_config().user_agent_limit
    assert user_agent.startswith("A" * limit)
    assert user_agent.endswith(f"[truncated {65536 - limit} chars]")
    assert len(user_agent) < 600


@pytest.mark.parametrize(
    "forwarded",
    [
        'for="[2001:db8::1',
        "for=;for=1.2.3.4",
        "garbage,,,;;;===",
        'for="\\"1.2.3.4"',
        "for=unknown",
        "for=_hidden, for=999.1.1.1",
        "\x00\x01\x7f",
    ],
)
def test_malformed_forwarded_header(audit_sink, forwarded):
    """A malformed Forwarded header never breaks the request; the peer is recorded instead."""
    trusted = replace(config.get_config(), trust=ProxyTrust(hops=1, header="forwarded"))
    config.use_config(trusted)
    assert request(simple_app(), "POST", "/pods", headers={"Forwarded": forwarded}).code == 200
    (event,) = audit_sink.events
    assert event.request is not None
    assert event.request.client_ip == "192.0.2.10"


def test_trusted_forwarded_header(audit_sink):
    """With one trusted proxy writing Forwarded, its last for= is the client."""
    config.use_config(replace(config.get_config(), trust=ProxyTrust(hops=1, header="forwarded")))
    request(simple_app(), "POST", "/pods", headers={"Forwarded": "for=6.6.6.6, for=198.51.100.7;proto=https"})
    (event,) = audit_sink.events
    assert event.request is not None
    assert event.request.client_ip == "198.51.100.7"
    assert event.request.forwarded_chain == ("for=6.6.6.6", "for=198.51.100.7;proto=https")


def test_spoofed_forwarded_for_without_trust(audit_sink):
    """By default no proxy is trusted: a client's X-Forwarded-For cannot choose the recorded IP."""
    request(simple_app(), "POST", "/pods", headers={"X-Forwarded-For": "1.2.3.4"})
    (event,) = audit_sink.events
    assert event.request is not None
    assert event.request.client_ip == "192.0.2.10"
    assert event.request.forwarded_chain == ("1.2.3.4",)


def test_well_formed_request_id_is_reused(audit_sink):
    """A well-formed X-Request-ID is kept as the record's request id."""
    request(simple_app(), "POST", "/pods", headers={"X-Request-ID": "0f8fad5b-d9cb-469f-a165-70867728950e"})
    assert audit_sink.events[0].request.request_id == "0f8fad5b-d9cb-469f-a165-70867728950e"  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "", "new\nline", "<script>"])
def test_invalid_request_id_is_replaced(audit_sink, bad):
    """A malformed X-Request-ID is replaced by a fresh generated id."""
    request(simple_app(), "POST", "/pods", headers={"X-Request-ID": bad})
    request_id = audit_sink.events[0].request.request_id  # type: ignore[union-attr]
    assert request_id != bad
    assert request_id is not None
    assert len(request_id) == 32
    int(request_id, 16)


def test_request_id_is_stable_within_a_request(audit_sink):
    """The generated request id is the same for every record of one request."""

    def handle(environ):
        record("create")
        record("update")

    request(simple_app(action=handle))
    first, second = audit_sink.events
    assert first.request.request_id == second.request.request_id  # type: ignore[union-attr]


def test_traceparent_gives_trace_id(audit_sink):
    """A valid W3C traceparent sets the record's trace id; an invalid one is ignored."""
    request(simple_app(), "POST", "/pods", headers={"Traceparent": TRACEPARENT})
    request(simple_app(), "POST", "/pods", headers={"Traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"})
    assert [e.request.trace_id for e in audit_sink.events] == [  # type: ignore[union-attr]
        "4bf92f3577b34da6a3ce929d0e0e4736",
        None,
    ]


def test_context_is_set_during_and_cleared_after_the_request():
    """current() is the request's context inside the app and None once the response is done."""
    seen: list[object] = []
    request(simple_app(action=lambda environ: seen.append(current())), "GET", "/pods")
    assert seen[0] is not None
    assert current() is None


def test_context_cleared_after_app_exception():
    """After an app exception no request context is left behind."""

    def app(environ, start_response):
        set_actor(Actor(id="leak?"))
        raise BoomError

    with pytest.raises(BoomError):
        request(app, "POST", "/pods")
    assert current() is None


def test_thread_isolation(audit_sink):
    """Two requests running at the same time in two threads never see each other's context."""
    both_inside = threading.Barrier(2, timeout=10)
    seen: dict[str, str | None] = {}

    def handle(environ):
        name = environ["PATH_INFO"].rsplit("/", 1)[-1]
        set_actor(Actor(id=name))
        both_inside.wait()  # the other request has now set its actor too
        context = current()
        seen[name] = context.actor.id if context and context.actor else None

    stack = wrap(simple_app(action=handle))
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            serve_unguarded(stack, make_environ("POST", f"/users/{name}"))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    with warnings.catch_warnings():
        warnings.simplefilter("error", WSGIWarning)
        threads = [threading.Thread(target=run, args=(name,)) for name in ("alice", "bob")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert seen == {"alice": "alice", "bob": "bob"}
    actors = {e.request.path.rsplit("/", 1)[-1]: e.actor.id for e in audit_sink.events}  # type: ignore[union-attr]
    assert actors == {"alice": "alice", "bob": "bob"}


def test_many_threads_each_get_their_own_record(audit_sink):
    """Under a thread pool each request's record carries its own actor and path."""
    stack = wrap(simple_app(action=lambda environ: set_actor(Actor(id=environ["PATH_INFO"][1:]))))
    with warnings.catch_warnings():
        warnings.simplefilter("error", WSGIWarning)
        threads = [
            threading.Thread(target=serve_unguarded, args=(stack, make_environ("POST", f"/u{i}")))
            for i in range(20)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    events = audit_sink.events
    assert len(events) == 20
    assert all(e.actor.id == e.request.path[1:] for e in events)  # type: ignore[union-attr]


def test_a_response_dropped_without_close_still_sends_its_record(audit_sink):
    """A client that never reads nor closes the response (werkzeug's unbuffered test client) does
    not cost the record: it is sent when the response is garbage-collected."""
    from werkzeug.test import Client  # noqa: PLC0415 - only this test uses it

    def app(environ, start_response):
        start_response("201 Created", [("Content-Type", "text/plain")])
        return ClosingBody([b"ok"])  # not a list: the record waits for the end of the body

    client = Client(AuditMiddleware(app))
    response = client.post("/pods")
    assert response.status_code == 201
    assert audit_sink.events == []  # not read, not closed: still pending
    del response
    gc.collect()
    (event,) = audit_sink.events
    assert event.request is not None
    assert event.request.status_code == 201


def test_a_list_response_nothing_asked_about_sends_its_record_before_close(audit_sink):
    """A list body runs no app code while it is sent: its record is handed over as the app returns it."""
    body = [b"ok"]
    result = AuditMiddleware(simple_app(status="201 Created"))(
        make_environ("POST", "/pods"), lambda status, headers, exc_info=None: None
    )
    assert result == body
    assert type(result) is list  # the app's own list, not a wrapper
    (event,) = audit_sink.events
    assert event.request is not None
    assert event.request.status_code == 201


def test_a_dropped_generator_response_is_recorded_once(audit_sink):
    """Dropping a half-read streamed response records it once (the generator's own close runs too)."""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"a"
        yield b"b"

    stack = AuditMiddleware(app)
    result = stack(make_environ("POST", "/pods"), lambda status, headers, exc_info=None: None)
    assert next(iter(result)) == b"a"
    del result
    gc.collect()
    assert len(audit_sink.events) == 1


# -- the lazy context of requests not audited by their method ------------------------------


def test_an_unaudited_get_that_asks_nothing_builds_no_context(audit_sink):
    """A GET whose app never asks for the audit context gets none built, and its list comes back as is."""
    seen: list[object] = []
    body = [b"ok"]

    def app(environ, start_response):
        seen.append((in_request(), opened()))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    result = AuditMiddleware(app)(make_environ("GET", "/pods"), lambda status, headers, exc_info=None: None)
    assert result is body
    assert seen == [(True, None)]
    assert current() is None
    audit_middleware.flush()
    assert audit_sink.events == []


def test_a_get_that_records_while_streaming_is_audited_with_its_status(audit_sink):
    """record() in a streamed GET, after start_response, builds the context then, with the status."""

    def app(environ, start_response):
        start_response("203 Non-Authoritative Information", [("Content-Type", "text/plain")])
        yield b"part"
        assert opened() is None  # nothing asked yet
        record("audit_exported", resource=Resource("audit_log"))
        yield b"rest"

    response = request(app, "GET", "/audit/export", headers={"X-Request-ID": "req-late"})
    assert response.body == b"partrest"
    (event,) = audit_sink.events
    assert event.action.id == "audit_exported"
    assert event.outcome == "success"
    assert event.request is not None
    facts = event.request
    assert (facts.method, facts.path, facts.status_code) == ("GET", "/audit/export", 203)
    assert event.request.request_id == "req-late"


def test_set_actor_in_a_get_waits_for_the_context_and_reaches_the_record(audit_sink):
    """set_actor() in a GET builds no context; a record() after it names that actor, the last one set."""
    seen: list[object] = []

    def handle(environ):
        set_actor(Actor(id="first"))
        set_actor(Actor(id="ann"))
        seen.append(opened())
        record("read", resource=Resource("pod", "p-1"))
        seen.append(opened().actor)  # type: ignore[union-attr]

    request(simple_app(action=handle), "GET", "/pods/p-1")
    assert seen == [None, Actor(id="ann")]
    (event,) = audit_sink.events
    assert event.actor == Actor(id="ann")


def test_a_get_that_records_then_raises_is_a_500_failure(audit_sink):
    """The late-built context of a GET still records the app's exception as a 500 failure."""

    def app(environ, start_response):
        record("read", resource=Resource("pod", "p-1"))
        raise BoomError

    with pytest.raises(BoomError):
        request(app, "GET", "/pods/p-1")
    (event,) = audit_sink.events
    assert event.outcome == "failure"
    assert event.request is not None
    assert event.request.status_code == 500


def test_a_record_from_a_thread_after_a_get_answered_is_sent_with_the_requests_facts(audit_sink):
    """A thread started by a GET (on a copy of its context) that records after the response
    gets the context built then, finished: the record is sent at once, with status and path."""
    started = threading.Event()
    go = threading.Event()
    threads: list[threading.Thread] = []

    def later() -> None:
        started.set()
        go.wait(10)
        record("restart", resource=Resource("pod", "p-1"))

    def handle(environ):
        thread = threading.Thread(target=contextvars.copy_context().run, args=(later,))
        threads.append(thread)
        thread.start()
        started.wait(10)

    request(simple_app(action=handle), "GET", "/pods/p-1")
    audit_middleware.flush()
    assert audit_sink.events == []
    go.set()
    threads[0].join(10)
    (event,) = audit_sink.events
    assert event.action.id == "restart"
    assert event.request is not None
    assert (event.request.method, event.request.path, event.request.status_code) == ("GET", "/pods/p-1", 200)


def test_a_nested_get_records_only_its_own_request(audit_sink):
    """An inner wrapped app that records in a GET gets its own context; the outer GET stays unbuilt."""
    outer_saw: list[object] = []
    inner = AuditMiddleware(simple_app(action=lambda environ: record("read", resource=Resource("pod", "in"))))

    def outer(environ, start_response):
        inner_environ = make_environ("GET", "/inner")
        result = inner(inner_environ, lambda status, headers, exc_info=None: None)
        b"".join(result)
        result.close()  # type: ignore[attr-defined]
        outer_saw.append(opened())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    request(outer, "GET", "/outer")
    assert outer_saw == [None]
    (event,) = audit_sink.events
    assert event.request is not None
    assert event.request.path == "/inner"


def test_lazy_gets_on_threads_each_keep_their_own_context(audit_sink):
    """Concurrent GETs, each setting its actor and half of them recording: each record is its own."""
    all_inside = threading.Barrier(8, timeout=10)

    def handle(environ):
        name = environ["PATH_INFO"][1:]
        set_actor(Actor(id=name))
        all_inside.wait()
        if int(name[1:]) % 2 == 0:
            record("read", resource=Resource("pod", name))

    stack = wrap(simple_app(action=handle))
    with warnings.catch_warnings():
        warnings.simplefilter("error", WSGIWarning)
        threads = [
            threading.Thread(target=serve_unguarded, args=(stack, make_environ("GET", f"/u{i}")))
            for i in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    events = sorted(audit_sink.events, key=lambda e: e.actor.id or "")
    assert [(e.actor.id, e.resource.id, e.request.path) for e in events] == [  # type: ignore[union-attr]
        (f"u{i}", f"u{i}", f"/u{i}") for i in (0, 2, 4, 6)
    ]


def test_the_record_reads_the_environ_as_the_server_gave_it(audit_sink):
    """An inner middleware rewriting the environ (ProxyFix-like) before the GET records changes no fact."""

    def handle(environ):
        environ["REMOTE_ADDR"] = "198.51.100.99"
        environ["PATH_INFO"] = "/rewritten"
        record("read", resource=Resource("pod", "p-1"))

    request(simple_app(action=handle), "GET", "/pods/p-1")
    (event,) = audit_sink.events
    assert event.request is not None
    assert (event.request.client_ip, event.request.path) == ("192.0.2.10", "/pods/p-1")


def test_the_actor_resolver_gets_the_servers_environ_in_a_lazy_get(audit_sink):
    """The resolvers of a late-built context receive the live environ, with what the app put there."""
    configure(sink=audit_sink, actor_resolver=lambda environ: Actor(id=environ.get("app.user")))

    def handle(environ):
        environ["app.user"] = "ann"
        record("read", resource=Resource("pod", "p-1"))

    request(simple_app(action=handle), "GET", "/pods/p-1")
    (event,) = audit_sink.events
    assert event.actor.id == "ann"


# -- the raw hand-over of audited requests nothing asked about --------------------------


def test_a_post_nothing_asks_about_is_built_on_the_worker_with_its_facts(audit_sink, monkeypatch):
    """The request thread keeps the environ's copy and the status; the worker builds the record."""
    on_worker = building_threads(monkeypatch, wsgi, "context_from_environ")
    seen: list[object] = []
    app = simple_app(status="201 Created", action=lambda environ: seen.append(opened()))
    request(app, "POST", "/pods", headers={"User-Agent": "curl/8.5", "X-Request-ID": "req-raw-1"})
    (event,) = audit_sink.events
    assert seen == [None]
    assert on_worker == [True]
    assert (event.action.id, event.outcome) == ("create", "success")
    assert event.request is not None
    facts = event.request
    assert (facts.method, facts.path, facts.status_code) == ("POST", "/pods", 201)
    assert (facts.client_ip, facts.user_agent, facts.request_id) == ("192.0.2.10", "curl/8.5", "req-raw-1")


def test_a_raw_post_that_raises_is_a_500_failure(audit_sink, monkeypatch):
    """The worker-built record of a POST whose app raised says 500 and failure."""
    on_worker = building_threads(monkeypatch, wsgi, "context_from_environ")

    def app(environ, start_response):
        raise BoomError

    with pytest.raises(BoomError):
        request(app, "DELETE", "/pods/p-1")
    (event,) = audit_sink.events
    assert on_worker == [True]
    assert (event.action.id, event.outcome) == ("delete", "failure")
    assert event.request is not None
    assert event.request.status_code == 500


def test_a_raw_post_reads_the_environ_as_the_server_gave_it(audit_sink):
    """An inner middleware rewriting the environ of a POST that records nothing changes no fact."""

    def handle(environ):
        environ["REMOTE_ADDR"] = "198.51.100.99"
        environ["PATH_INFO"] = "/rewritten"
        environ["HTTP_USER_AGENT"] = "forged/1"

    request(simple_app(action=handle), "POST", "/pods", headers={"User-Agent": "curl/8.5"})
    (event,) = audit_sink.events
    assert event.request is not None
    assert (event.request.client_ip, event.request.path, event.request.user_agent) == (
        "192.0.2.10",
        "/pods",
        "curl/8.5",
    )


def test_a_post_with_resolvers_builds_its_context_on_the_request_thread(audit_sink, monkeypatch):
    """Resolvers read the live environ while the response starts, on the request thread."""
    on_worker = building_threads(monkeypatch, wsgi, "context_from_environ")
    resolved_on: list[str] = []

    def actor_of(environ):
        resolved_on.append(threading.current_thread().name)
        return Actor(id=environ.get("app.user"))

    configure(sink=audit_sink, actor_resolver=actor_of)

    def handle(environ):
        environ["app.user"] = "ann"

    request(simple_app(action=handle), "POST", "/pods")
    (event,) = audit_sink.events
    assert on_worker == [False]
    assert resolved_on == [threading.current_thread().name]
    assert event.actor.id == "ann"


def test_set_actor_in_a_post_builds_the_context_at_once(audit_sink, monkeypatch):
    """A hand-over in a request that may be audited builds its context there and then, on this thread."""
    on_worker = building_threads(monkeypatch, wsgi, "context_from_environ")
    seen: list[object] = []

    def handle(environ):
        set_actor(Actor(id="ann"))
        context = opened()
        seen.append(None if context is None else context.actor)

    request(simple_app(action=handle), "POST", "/pods")
    (event,) = audit_sink.events
    assert seen == [Actor(id="ann")]
    assert on_worker == [False]
    assert event.actor == Actor(id="ann")


def test_a_raw_post_queued_holds_no_environ(audit_sink, monkeypatch):
    """The queued hand-over of a raw POST drops the live environ (its body, say): only the copy stays."""

    queued: list[object] = []
    submit = config.AuditConfig.submit

    def watched(self, job):
        queued.append(job)
        submit(self, job)

    monkeypatch.setattr(config.AuditConfig, "submit", watched)
    request(simple_app(), "POST", "/pods")
    (job,) = queued
    assert isinstance(job, RawRequestJob)
    assert job.request.native is None
    assert job.request.kept["PATH_INFO"] == "/pods"
    assert "wsgi.input" not in job.request.kept
    assert len(audit_sink.events) == 1


def test_the_kept_environ_gives_the_same_context_as_the_whole_one():
    """What a queued request keeps is all the context is read from, header by header."""
    headers = {
        "User-Agent": "curl/8.5",
        "X-Forwarded-For": "198.51.100.7, 203.0.113.1",
        "Forwarded": "for=198.51.100.7",
        "X-Request-ID": "req-trim-1",
        "Traceparent": TRACEPARENT,
    }
    environ = make_environ("PATCH", "/pods/p-1", headers=headers, SCRIPT_NAME="/api")
    kept = wsgi.raw_environ(environ)
    assert "wsgi.input" not in kept
    assert wsgi.context_from_environ(kept).facts() == wsgi.context_from_environ(environ).facts()


def test_resolvers_run_on_the_request_thread_when_the_app_raises_before_answering(audit_sink):
    """No start_response: the resolvers still read the live environ, at the end, on this thread."""
    configure(
        sink=audit_sink,
        actor_resolver=lambda environ: Actor(id=environ.get("app.user")),
        tenant_resolver=lambda environ: "acme",
    )

    def app(environ, start_response):
        environ["app.user"] = "ann"
        raise BoomError

    with pytest.raises(BoomError):
        request(app, "POST", "/pods")
    (event,) = audit_sink.events
    assert (event.actor.id, event.outcome) == ("ann", "failure")
    assert event.tenant is not None
    assert event.tenant.id == "acme"


def test_a_context_is_published_only_whole(audit_sink, monkeypatch):
    """A thread that finds the context while another builds it never sees it without the
    response's status (the late record()'s outcome, the worker's job read it)."""
    entered, release = threading.Event(), threading.Event()
    apply_start = wsgi.EnvironRequest.apply_start

    def slow_apply_start(self, context):
        if threading.current_thread().name == "builder":
            entered.set()
            release.wait(5)
        apply_start(self, context)

    monkeypatch.setattr(wsgi.EnvironRequest, "apply_start", slow_apply_start)
    environ = make_environ("POST", "/pods")
    stand_in = wsgi.EnvironRequest(environ, wsgi.raw_environ(environ), config.get_config(), True)
    stand_in.status, stand_in.headers = "403 Forbidden", []
    builder = threading.Thread(target=stand_in.open, name="builder")
    builder.start()
    assert entered.wait(5)
    assert stand_in.context is None  # being built: not published yet
    release.set()
    builder.join(5)
    context = stand_in.context
    assert context is not None
    assert context.status_code == 403
