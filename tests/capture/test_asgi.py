"""The pure ASGI middleware, driven with hand-made scope, receive and send."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from audit_middleware import Actor, ASGIAuditMiddleware, Resource, configure, current, record, set_actor
from audit_middleware.capture import asgi
from audit_middleware.capture.context import in_request, opened
from audit_middleware.config import AuditConfig, use_config
from audit_middleware.sinks import MemorySink
from tests.worker_support import building_threads

Message = dict[str, Any]


def http_scope(
    method: str = "POST", path: str = "/pods", headers: list[tuple[bytes, bytes]] | None = None, **extra: Any
) -> dict[str, Any]:
    """An ASGI 3 HTTP scope as a server builds it."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": b"",
        "root_path": "",
        "headers": headers or [(b"host", b"testserver")],
        "client": ("192.0.2.20", 51000),
        "server": ("testserver", 80),
    }
    scope.update(extra)
    return scope


class Channel:
    """A receive/send pair: requests come from a list of messages, responses are kept."""

    def __init__(self, incoming: list[Message] | None = None) -> None:
        self.incoming = list(incoming or [{"type": "http.request", "body": b"", "more_body": False}])
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        if self.incoming:
            return self.incoming.pop(0)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)


async def respond(send: Any, status: int = 200, chunks: tuple[bytes, ...] = (b"ok",)) -> None:
    """Send a whole response, one body message per chunk."""
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]}
    )
    for index, chunk in enumerate(chunks):
        await send({"type": "http.response.body", "body": chunk, "more_body": index < len(chunks) - 1})


def simple_app(status: int = 200, action: Any = None) -> Any:
    """An ASGI app that reads the request, runs ``action(scope)``, then answers."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        if action is not None:
            action(scope)
        await respond(send, status)

    return app


async def run(app: Any, scope: dict[str, Any] | None = None, channel: Channel | None = None) -> Channel:
    """Run one connection through the middleware."""
    channel = channel or Channel()
    await ASGIAuditMiddleware(app)(scope or http_scope(), channel.receive, channel.send)
    return channel


async def test_streaming_response(audit_sink):
    """Every chunk of a streamed body reaches the server unchanged, then one record is sent."""
    chunks = (b"one", b"two", b"three", b"")
    records_while_streaming: list[int] = []

    async def app(scope, receive, send):
        await receive()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        for chunk in chunks[:-1]:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            records_while_streaming.append(len(audit_sink.events))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    channel = await run(app, http_scope("POST", "/exports"))
    assert [m.get("body") for m in channel.sent[1:]] == list(chunks)
    assert channel.sent[0]["status"] == 200
    assert records_while_streaming == [0, 0, 0]
    (event,) = audit_sink.events
    assert event.action.id == "create"
    assert event.outcome == "success"
    assert event.request is not None
    assert event.request.status_code == 200
    assert event.request.path == "/exports"
    assert event.request.client_ip == "192.0.2.20"


@pytest.mark.parametrize(("method", "action"), [("PUT", "update"), ("PATCH", "update"), ("DELETE", "delete")])
async def test_state_changing_methods(audit_sink, method, action):
    """PUT/PATCH/DELETE each make one record with the generic action."""
    await run(simple_app(204), http_scope(method, "/pods/p1"))
    (event,) = audit_sink.events
    assert event.action.id == action
    assert event.resource == Resource("pods", "p1")


async def test_get_is_not_audited(audit_sink):
    """A GET without a rule makes no record."""
    await run(simple_app(), http_scope("GET", "/pods"))
    assert audit_sink.events == []


async def test_error_status_is_failure(audit_sink):
    """A 4xx/5xx response makes the record a failure."""
    await run(simple_app(403), http_scope("DELETE", "/pods/1"))
    assert audit_sink.events[0].outcome == "failure"


class BoomError(Exception):
    """The app's own error."""


async def test_app_exception_is_recorded_and_re_raised(audit_sink):
    """An exception from the app gives a 500 failure record and propagates untouched."""
    error = BoomError("db down")

    async def app(scope, receive, send):
        await receive()
        raise error

    with pytest.raises(BoomError) as raised:
        await run(app)
    assert raised.value is error
    (event,) = audit_sink.events
    assert event.outcome == "failure"
    assert event.request is not None
    assert event.request.status_code == 500
    assert current() is None


async def test_exception_after_response_started(audit_sink):
    """An app that fails mid-stream is recorded as a failure even though 200 was sent."""

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise BoomError("mid-stream")

    with pytest.raises(BoomError):
        await run(app)
    (event,) = audit_sink.events
    assert event.outcome == "failure"


async def test_client_disconnect_still_records(audit_sink):
    """The client goes away mid-stream (receive says http.disconnect) and the app stops: a record exists."""

    async def app(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        message = await receive()
        if message["type"] == "http.disconnect":
            return  # stop streaming
        await send({"type": "http.response.body", "body": b"never", "more_body": False})

    channel = Channel([{"type": "http.request", "body": b"{}", "more_body": False}])
    await run(app, http_scope("POST", "/exports"), channel)
    assert [m["type"] for m in channel.sent] == ["http.response.start", "http.response.body"]
    (event,) = audit_sink.events
    assert event.request is not None
    assert event.request.path == "/exports"
    assert current() is None


async def test_disconnect_before_any_response_still_records(audit_sink):
    """A client gone before the app answered still leaves a record of the attempt."""

    async def app(scope, receive, send):
        while (await receive())["type"] != "http.disconnect":
            pass

    channel = Channel([{"type": "http.request", "body": b"x", "more_body": True}])
    await run(app, http_scope("DELETE", "/pods/9"), channel)
    (event,) = audit_sink.events
    assert event.action.id == "delete"
    assert channel.sent == []


async def test_cancelled_task_still_records(audit_sink):
    """A request task cancelled by the server (client gone) leaves its record and stays cancelled."""
    started = asyncio.Event()

    async def app(scope, receive, send):
        await receive()
        record("restart", resource=Resource("pod", "slow"))
        started.set()
        await asyncio.Event().wait()  # never set

    task = asyncio.create_task(run(app, http_scope("POST", "/pods/slow/restart")))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (event,) = audit_sink.events
    assert event.action.id == "restart"
    assert event.outcome == "failure"
    assert current() is None


async def test_websockets_pass_through_untouched(audit_sink):
    """Websocket connections reach the app with the identical scope, receive and send."""
    scope: dict[str, Any] = {"type": "websocket", "asgi": {"version": "3.0"}}
    scope.update(path="/ws", headers=[], client=("192.0.2.1", 1))
    seen: list[Any] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        pass

    async def app(inner_scope, inner_receive, inner_send):
        seen.extend([inner_scope, inner_receive, inner_send, current()])

    await ASGIAuditMiddleware(app)(scope, receive, send)
    assert seen[0] is scope
    assert seen[1] is receive
    assert seen[2] is send
    assert seen[3] is None
    assert audit_sink.events == []


class Drains(MemorySink):
    """A sink counting how often it was asked to persist its buffer (what a drain does first)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.config = AuditConfig(sink=self)

    def persist(self, timeout: float | None = None) -> bool:
        self.calls += 1
        return True


async def _run_lifespan(app: Any) -> list[str]:
    """Start up and shut down ``app`` through the middleware; the messages the server got."""
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message["type"])

    await ASGIAuditMiddleware(app)({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    return sent


async def test_lifespan_shutdown_drains_before_it_completes(audit_sink):
    """The app's lifespan runs as written; records are drained before shutdown.complete reaches the server."""
    drains = Drains()
    previous = use_config(drains.config)
    order: list[str] = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                order.append(f"drained before: {drains.calls}")
                await send({"type": "lifespan.shutdown.complete"})
                order.append(f"drained after: {drains.calls}")
                return

    try:
        sent = await _run_lifespan(app)
    finally:
        use_config(previous)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert order == ["drained before: 0", "drained after: 1"]


async def test_an_app_without_lifespan_gets_it_answered_and_drained(audit_sink):
    """An app that ignores lifespan still drains at shutdown: the middleware answers for it."""
    drains = Drains()
    previous = use_config(drains.config)

    async def app(scope, receive, send):
        return  # a minimal app: only HTTP

    try:
        sent = await _run_lifespan(app)
    finally:
        use_config(previous)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert drains.calls == 1


async def test_lifespan_errors_pass_through(audit_sink):
    """An exception in a lifespan handler propagates unchanged and records nothing."""

    async def app(scope, receive, send):
        raise BoomError("startup failed")

    with pytest.raises(BoomError, match="startup failed"):
        await ASGIAuditMiddleware(app)({"type": "lifespan"}, Channel().receive, Channel().send)
    assert audit_sink.events == []


async def test_context_isolation_across_tasks(audit_sink):
    """50 concurrent requests, each setting its own actor, each get a record with their own actor."""

    async def app(scope, receive, send):
        await receive()
        name = scope["path"].rsplit("/", 1)[-1]
        set_actor(Actor(id=name))
        await asyncio.sleep(0)  # let the other requests run and set theirs
        context = current()
        assert context is not None
        assert context.actor == Actor(id=name)
        record("update", resource=Resource("member", name))
        await asyncio.sleep(0)
        await respond(send)

    await asyncio.gather(*(run(app, http_scope("PATCH", f"/members/m{i}")) for i in range(50)))
    events = audit_sink.events
    assert len(events) == 50
    for event in events:
        assert event.resource is not None
        assert event.actor.id == event.resource.id
        assert event.request is not None
        assert event.request.path == f"/members/{event.actor.id}"
    assert len({e.request.request_id for e in events if e.request}) == 50


async def test_late_actor_resolution_from_scope(audit_sink):
    """The resolver receives the scope at response time, after the app authenticated."""
    configure(
        sink=audit_sink, actor_resolver=lambda scope: Actor(id=scope.get("user")) if "user" in scope else None
    )
    await run(simple_app(action=lambda scope: scope.update(user="token-user")), http_scope("POST", "/keys"))
    assert audit_sink.events[0].actor.id == "token-user"


async def test_invalid_utf8_header_bytes(audit_sink):
    """Header bytes that are not UTF-8 never break the request; text gets U+FFFD, bad ids are replaced."""
    headers = [
        (b"host", b"testserver"),
        (b"User-Agent", b"bot \xff\xfe\xc3"),
        (b"x-request-id", b"\xff\xff"),
        (b"x-forwarded-for", b"\xff, 1.2.3.4"),
        (b"forwarded", b"for=\xc0\x80"),
        (b"traceparent", b"\x00\xff"),
    ]
    channel = await run(simple_app(), http_scope("POST", "/pods", headers))
    assert channel.sent[0]["status"] == 200
    (event,) = audit_sink.events
    facts = event.request
    assert facts is not None
    assert facts.user_agent is not None
    assert facts.user_agent.startswith("bot \ufffd")
    assert facts.request_id is not None
    assert "\ufffd" not in facts.request_id
    assert facts.client_ip == "192.0.2.20"
    assert facts.trace_id is None
    event.to_document()


async def test_request_id_and_traceparent(audit_sink):
    """A well-formed X-Request-ID is reused and traceparent gives the trace id."""
    headers = [
        (b"x-request-id", b"req-77"),
        (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ]
    await run(simple_app(), http_scope("POST", "/pods", headers))
    facts = audit_sink.events[0].request
    assert facts is not None
    assert facts.request_id == "req-77"
    assert facts.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_repeated_forwarded_headers_are_one_list(audit_sink):
    """Two X-Forwarded-For lines form one chain, in order."""
    headers = [(b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-for", b"2.2.2.2")]
    await run(simple_app(), http_scope("POST", "/pods", headers))
    assert audit_sink.events[0].request.forwarded_chain == ("1.1.1.1", "2.2.2.2")  # type: ignore[union-attr]


async def test_root_path_is_part_of_the_path(audit_sink):
    """An app mounted under root_path records the full path."""
    await run(simple_app(), http_scope("POST", "/pods", root_path="/api"))
    assert audit_sink.events[0].request.path == "/api/pods"  # type: ignore[union-attr]


async def test_context_cleared_after_request():
    """No request context is left in the caller's context after the response, or after an error."""
    await run(simple_app(action=lambda scope: set_actor(Actor(id="x"))))
    assert current() is None

    async def failing(scope, receive, send):
        raise BoomError

    with pytest.raises(BoomError):
        await run(failing)
    assert current() is None


# -- the lazy context of requests not audited by their method ------------------------------


async def test_an_unaudited_get_that_asks_nothing_builds_no_context(audit_sink):
    """A GET whose app never asks for the audit context gets none built, and no record."""
    seen: list[object] = []
    app = simple_app(action=lambda scope: seen.append((in_request(), opened())))
    await run(app, http_scope("GET", "/pods"))
    assert seen == [(True, None)]
    assert current() is None
    assert audit_sink.events == []


async def test_a_get_that_records_after_the_response_started_is_audited_with_its_status(audit_sink):
    """record() after http.response.start (a background task) builds the context then, with the status."""

    async def app(scope, receive, send):
        await receive()
        await respond(send, 202)
        assert opened() is None
        record("audit_exported", resource=Resource("audit_log"))

    await run(app, http_scope("GET", "/audit/export", headers=[(b"x-request-id", b"req-late")]))
    (event,) = audit_sink.events
    assert event.request is not None
    facts = event.request
    assert (facts.method, facts.path, facts.status_code) == ("GET", "/audit/export", 202)
    assert event.request.request_id == "req-late"


async def test_set_actor_in_a_get_waits_for_the_context_and_reaches_the_record(audit_sink):
    """set_actor() in a GET builds no context; a record() after it names that actor."""
    seen: list[object] = []

    def handle(scope):
        set_actor(Actor(id="ann"))
        seen.append(opened())
        record("read", resource=Resource("pod", "p-1"))

    await run(simple_app(action=handle), http_scope("GET", "/pods/p-1"))
    assert seen == [None]
    (event,) = audit_sink.events
    assert event.actor == Actor(id="ann")


async def test_lazy_gets_on_tasks_each_keep_their_own_context(audit_sink):
    """Concurrent GETs on one loop, each setting its actor and half recording: each record is its own."""

    async def app(scope, receive, send):
        await receive()
        name = scope["path"][1:]
        set_actor(Actor(id=name))
        await asyncio.sleep(0)  # the other requests set theirs
        if int(name[1:]) % 2 == 0:
            record("read", resource=Resource("pod", name))
        await asyncio.sleep(0)
        await respond(send)

    await asyncio.gather(*(run(app, http_scope("GET", f"/u{i}")) for i in range(20)))
    events = sorted(audit_sink.events, key=lambda e: int((e.actor.id or "u0")[1:]))
    assert [(e.actor.id, e.resource.id, e.request.path) for e in events] == [  # type: ignore[union-attr]
        (f"u{i}", f"u{i}", f"/u{i}") for i in range(0, 20, 2)
    ]


async def test_a_task_spawned_by_a_get_that_records_after_it_ended_keeps_its_facts(audit_sink):
    """A task created in a GET (it copies the context) recording after the request ended is sent at
    once, with the request's path and status."""
    go = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def later() -> None:
        await go.wait()
        record("restart", resource=Resource("pod", "p-1"))

    async def app(scope, receive, send):
        await receive()
        tasks.append(asyncio.get_running_loop().create_task(later()))
        await respond(send)

    await run(app, http_scope("GET", "/pods/p-1"))
    assert audit_sink.events == []
    go.set()
    await tasks[0]
    (event,) = audit_sink.events
    assert event.request is not None
    assert (event.request.method, event.request.path, event.request.status_code) == ("GET", "/pods/p-1", 200)


async def test_the_record_reads_the_scope_as_the_server_gave_it(audit_sink):
    """An inner app replacing scope entries (proxy headers) before the GET records changes no fact."""

    def handle(scope):
        scope["client"] = ("198.51.100.99", 1)
        record("read", resource=Resource("pod", "p-1"))

    await run(simple_app(action=handle), http_scope("GET", "/pods/p-1"))
    (event,) = audit_sink.events
    assert event.request is not None
    assert event.request.client_ip == "192.0.2.20"


# -- the raw hand-over of audited requests nothing asked about --------------------------


async def test_a_post_nothing_asks_about_is_built_on_the_worker_with_its_facts(audit_sink, monkeypatch):
    """The request keeps the scope's copy and the response start; the worker builds the record."""
    on_worker = building_threads(monkeypatch, asgi, "context_from_scope")
    seen: list[object] = []
    headers = [(b"host", b"testserver"), (b"user-agent", b"curl/8.5"), (b"x-request-id", b"req-raw-2")]
    app = simple_app(status=202, action=lambda scope: seen.append(opened()))
    await run(app, http_scope("PATCH", "/pods/p-1", headers=headers))
    (event,) = audit_sink.events
    assert seen == [None]
    assert on_worker == [True]
    assert (event.action.id, event.outcome) == ("update", "success")
    assert event.request is not None
    facts = event.request
    assert (facts.method, facts.path, facts.status_code) == ("PATCH", "/pods/p-1", 202)
    assert (facts.client_ip, facts.user_agent, facts.request_id) == ("192.0.2.20", "curl/8.5", "req-raw-2")


async def test_a_raw_post_reads_the_headers_as_the_server_gave_them(audit_sink):
    """An inner app changing the scope's header list in place (a proxy-headers fix) changes no fact."""

    def handle(scope):
        scope["headers"][:] = [(b"user-agent", b"forged/1"), (b"x-request-id", b"forged-id")]
        scope["client"] = ("198.51.100.99", 1)

    headers = [(b"host", b"testserver"), (b"user-agent", b"curl/8.5"), (b"x-request-id", b"req-raw-3")]
    await run(simple_app(action=handle), http_scope("POST", "/pods", headers=headers))
    (event,) = audit_sink.events
    assert event.request is not None
    facts = event.request
    assert (facts.client_ip, facts.user_agent, facts.request_id) == ("192.0.2.20", "curl/8.5", "req-raw-3")


async def test_a_raw_post_cancelled_is_a_failure(audit_sink):
    """A POST whose task is cancelled before answering (client gone) leaves a failed record."""

    async def app(scope, receive, send):
        await receive()
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await run(app, http_scope("POST", "/pods"))
    (event,) = audit_sink.events
    assert event.outcome == "failure"
    assert event.request is not None
    assert event.request.status_code == 500


def test_the_kept_scope_gives_the_same_context_as_the_whole_one(audit_sink):
    """What a queued request keeps is all the context is read from, header by header."""
    headers = [
        (b"user-agent", b"curl/8.5"),
        (b"x-forwarded-for", b"198.51.100.7"),
        (b"forwarded", b"for=198.51.100.7"),
        (b"x-request-id", b"req-trim-2"),
        (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ]
    scope = http_scope("DELETE", "/pods/p-1", headers=headers, root_path="/api", state={"big": object()})
    kept = asgi.raw_scope(scope)
    assert "state" not in kept
    assert kept["headers"] == headers
    assert kept["headers"] is not scope["headers"]
    assert asgi.context_from_scope(kept).facts() == asgi.context_from_scope(scope).facts()


async def test_resolvers_run_when_the_app_raises_before_answering(audit_sink):
    """No http.response.start: the resolvers still read the scope at the end of the request."""
    configure(sink=audit_sink, actor_resolver=lambda scope: Actor(id=scope.get("user")))

    async def app(scope, receive, send):
        scope["user"] = "ann"
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await run(app, http_scope("POST", "/pods"))
    (event,) = audit_sink.events
    assert (event.actor.id, event.outcome) == ("ann", "failure")
