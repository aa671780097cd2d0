"""Property tests: arbitrary request headers never break capture and never cost the record."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any
from wsgiref.validate import WSGIWarning

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_middleware import ASGIAuditMiddleware, config
from audit_middleware.capture.clientip import ProxyTrust
from audit_middleware.model.encoding import dumps, loads
from audit_middleware.sinks import MemorySink
from tests.wsgi_support import make_environ, serve_unguarded, simple_app, wrap

PEER = "192.0.2.10"
HEADER_NAMES = ["User-Agent", "X-Forwarded-For", "Forwarded", "X-Request-ID", "Traceparent", "X-Custom"]

# What a PEP 3333 server hands over: the raw bytes decoded as latin-1.
latin1_text = st.binary(max_size=600).map(lambda raw: raw.decode("latin-1"))
# What a careless server might hand over: any text, lone surrogates included.
any_text = st.text(st.characters(codec=None), max_size=300)
header_values = st.one_of(
    latin1_text, any_text, st.sampled_from(["", " ", ",", ";", '"', "for=", "[::1]:", "\x00"])
)
headers = st.dictionaries(st.sampled_from(HEADER_NAMES), header_values, max_size=len(HEADER_NAMES))
paths = st.binary(max_size=200).map(lambda raw: "/" + raw.decode("latin-1"))
trusts = st.sampled_from(
    [
        ProxyTrust(),
        ProxyTrust(hops=1),
        ProxyTrust(hops=3),
        ProxyTrust(hops=1, header="forwarded"),
        ProxyTrust.from_config(["192.0.2.0/24", "2001:db8::/32"]),
        ProxyTrust.from_config(["192.0.2.0/24"], header="forwarded"),
    ]
)
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    # each example installs its own configuration and sink; the autouse fixture only restores afterwards
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _install(trust: ProxyTrust) -> MemorySink:
    sink = MemorySink()
    config.use_config(config.AuditConfig(sink=sink, trust=trust))
    return sink


@SETTINGS
@given(headers=headers, path=paths, trust=trusts)
def test_wsgi_post_with_arbitrary_headers_always_records_once(headers, path, trust):
    """Any header bytes/strings and path: the app answers, the server sees no error, one record results."""
    sink = _install(trust)
    environ = make_environ("POST", path, headers=headers)
    with warnings.catch_warnings():
        warnings.simplefilter("error", WSGIWarning)
        response = serve_unguarded(wrap(simple_app(body=b"ok")), environ)
    assert response.body == b"ok"
    (event,) = sink.events
    assert event.request is not None
    assert event.request.method == "POST"
    assert event.request.request_id
    # the record can always be stored
    document = loads(dumps(event.to_document()))
    assert document["event"]["action"] == "create"


@SETTINGS
@given(headers=headers)
def test_untrusting_default_always_records_the_peer(headers):
    """With no trusted proxy, no header can change the recorded client IP."""
    sink = _install(ProxyTrust())
    serve_unguarded(wrap(simple_app()), make_environ("POST", "/pods", headers=headers))
    (event,) = sink.events
    assert event.request is not None
    assert event.request.client_ip == PEER


@SETTINGS
@given(headers=headers)
def test_user_agent_is_bounded(headers):
    """The recorded user agent never exceeds the limit plus the truncation marker."""
    sink = _install(ProxyTrust())
    serve_unguarded(wrap(simple_app()), make_environ("POST", "/pods", headers=headers))
    user_agent = sink.events[0].request.user_agent  # type: ignore[union-attr]
    assert user_agent is None or len(user_agent) <= config.get_config().user_agent_limit + 40


raw_headers = st.lists(
    st.tuples(
        st.sampled_from(
            [b"user-agent", b"User-Agent", b"x-forwarded-for", b"forwarded", b"x-request-id", b"traceparent"]
        )
        | st.binary(min_size=1, max_size=20),
        st.binary(max_size=400),
    ),
    max_size=8,
)


@SETTINGS
@given(header_list=raw_headers, trust=trusts)
def test_asgi_post_with_arbitrary_header_bytes_always_records_once(header_list, trust):
    """Any ASGI header bytes: the response goes out unchanged and one record results."""
    sink = _install(trust)
    sent: list[dict[str, Any]] = []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"made"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/pods",
        "root_path": "",
        "headers": header_list,
        "client": (PEER, 1234),
    }
    asyncio.run(ASGIAuditMiddleware(app)(scope, receive, send))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    (event,) = sink.events
    assert event.request is not None
    assert event.request.status_code == 201
    loads(dumps(event.to_document()))
