"""Pure ASGI middleware (no Starlette ``BaseHTTPMiddleware``: it hides ContextVar changes
from the caller and costs far more per request).

    app = ASGIAuditMiddleware(app)

Only ``http`` scopes are audited; ``websocket`` passes straight through. ``lifespan``
passes through too, with two additions: the audit configuration is built at
``lifespan.startup`` (so an unusable default shows at start-up, not in a request), and
buffered records are drained before the app's ``lifespan.shutdown.complete`` reaches
the server. An app that does not speak lifespan (it returns without reading a message)
gets it answered by the middleware, so its shutdown drains too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from audit_middleware import logs
from audit_middleware.capture.active import current_settings, installed
from audit_middleware.capture.context import LazyContext, RequestContext, bind, unbind
from audit_middleware.capture.headers import decode_header
from audit_middleware.capture.recorder import finish_bound, may_audit, response_begun
from audit_middleware.capture.settings import CaptureSettings

ASGIScope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[ASGIScope, Receive, Send], Awaitable[None]]

_MAX_PATH = 2048
_RAW = frozenset(("x_forwarded_for", "forwarded"))
_WANTED = {
    b"x-forwarded-for": "x_forwarded_for",
    b"forwarded": "forwarded",
    b"user-agent": "user_agent_raw",
    b"x-request-id": "request_id_raw",
    b"traceparent": "traceparent",
}


def raw_scope(scope: ASGIScope) -> dict[str, Any]:
    """What an audited request keeps of its scope: a copy of the keys its context reads, the
    header list copied too (an inner app may change it in place); see ``wsgi.raw_environ``."""
    get = scope.get
    return {
        "method": get("method", "GET"),
        "path": get("path", ""),
        "root_path": get("root_path", ""),
        "client": get("client"),
        "headers": list(get("headers", ())),
    }


def context_from_scope(scope: ASGIScope, config: CaptureSettings | None = None) -> RequestContext:
    """Read what the audit record needs from an ASGI HTTP scope."""
    config = config or current_settings()
    found: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        key = _WANTED.get(name.lower() if not name.islower() else name)
        if key is not None:
            # Forwarding headers stay raw: their trusted entries are at the end, which a
            # length-bounded decode could cut off (clientip bounds them itself).
            text = value.decode("latin-1") if key in _RAW else (decode_header(value) or "")
            # repeated headers are one list, in order (RFC 9110 section 5.3)
            found[key] = f"{found[key]}, {text}" if key in found else text
    client = scope.get("client")
    root = scope.get("root_path", "")
    path = scope.get("path", "")
    if root and not path.startswith(root):
        path = root + path
    return RequestContext(
        method=str(scope.get("method", "GET")).upper(),
        path=path[:_MAX_PATH] or "/",
        peer=client[0] if client else None,
        trust=config.trust,
        user_agent_limit=config.user_agent_limit,
        native_request=scope,
        x_forwarded_for=found.get("x_forwarded_for"),
        forwarded=found.get("forwarded"),
        user_agent_raw=found.get("user_agent_raw"),
        request_id_raw=found.get("request_id_raw"),
        traceparent=found.get("traceparent"),
    )


def _location(message: Message) -> str | None:
    for name, value in message.get("headers", ()):
        if name.lower() == b"location":
            return bytes(value).decode("latin-1")
    return None


class ScopeRequest(LazyContext):
    """The request as the server handed it over: its context is built from it on first use."""

    __slots__ = ()

    def build(self) -> RequestContext:
        """The context, read from the scope as it was when the request came in."""
        context = context_from_scope(self.kept, self.config)
        context.native_request = self.native
        return context

    def apply_start(self, context: RequestContext) -> None:
        """The status and redirect target of the ``http.response.start`` kept so far."""
        response_started(context, self.status)


def response_started(context: RequestContext, message: Message) -> None:
    """Note the status of ``http.response.start``, and where a redirect sends the client."""
    status = context.status_code = int(message["status"])
    if 300 <= status < 400:  # where it sends the client, for the outcome rules
        context.location = _location(message)


class ASGIAuditMiddleware:
    """Wrap an ASGI application so its HTTP requests produce audit records.

    >>> async def app(scope, receive, send): ...
    >>> wrapped = ASGIAuditMiddleware(app)
    """

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        """Handle one connection scope."""
        if scope["type"] == "lifespan":
            await _lifespan(self.app, scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        config = current_settings()
        audited = may_audit(str(scope.get("method", "GET")), config)
        # a copy to read later: an inner app replacing scope entries (proxy headers) changes no
        # record; a request that is not audited is never queued, and a whole copy is cheaper
        kept = raw_scope(scope) if audited else dict(scope)
        request = ScopeRequest(scope, kept, config, audited)
        token = bind(request)

        async def audited_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                request.status = message  # first, then read context: see LazyContext.open
                response_begun(request)
            await send(message)

        failed = True
        try:
            await self.app(scope, receive, audited_send)
            failed = False
        finally:
            # BaseException too: a cancelled task (client gone) still leaves its record
            finish_bound(request, failed=failed)
            unbind(token)


_SHUTDOWN_DONE = frozenset(("lifespan.shutdown.complete", "lifespan.shutdown.failed"))


async def _lifespan(app: ASGIApp, scope: ASGIScope, receive: Receive, send: Send) -> None:
    """Pass the lifespan protocol through, set up at startup and drain at shutdown."""
    received = False

    async def watched_receive() -> Message:
        nonlocal received
        message = await receive()
        received = True
        if message["type"] == "lifespan.startup":
            _set_up()
        return message

    async def drained_send(message: Message) -> None:
        if message["type"] in _SHUTDOWN_DONE:
            _drain()
        await send(message)

    await app(scope, watched_receive, drained_send)
    if not received:  # the app does not speak lifespan: answer for it, so its shutdown drains
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _set_up()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                _drain()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _set_up() -> None:
    try:
        current_settings()
    except Exception as exc:  # noqa: BLE001 - never fail the app's start-up because of auditing
        logs.warn(f"audit configuration could not be built at start-up: {exc!r}")


def _drain() -> None:
    # Synchronous on purpose: every request has ended, and the server may not run asyncio.
    settings = installed()
    if settings is not None:
        try:
            settings.drain()
        except Exception as exc:  # noqa: BLE001 - the app's shutdown must complete
            logs.warn(f"audit records could not be drained at shutdown: {exc!r}")
