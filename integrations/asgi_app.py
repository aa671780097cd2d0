"""Plain ASGI example: the pods API with one line of auditing, no web framework.

uvicorn integrations.asgi_app:app --port 8002   # records as JSON lines on stdout
curl -X POST 127.0.0.1:8002/pods -H 'Authorization: Bearer demo-token-alice' -d '{"name": "web"}'
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from audit_middleware import ASGIAuditMiddleware
from audit_middleware.sinks import JsonLinesSink, Sink
from integrations import plain_api, pods

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]


def _header(scope: Any, name: str) -> str | None:
    wanted = name.encode()
    for key, value in scope.get("headers", ()):
        if key.lower() == wanted:
            text: str = value.decode("latin-1")
            return text
    return None


def create_app(sink: Sink | None = None, tokens: pods.Tokens | None = None) -> ASGIApp:
    """The example app, audited into ``sink`` (default: stdout)."""
    api = plain_api.PodsAPI(tokens or pods.Tokens())
    plain_api.configure_auditing(sink or JsonLinesSink.stdout(), api.tokens, _header)

    async def app(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":  # nothing to start or stop: acknowledge both
            while True:
                phase = (await receive())["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{phase}.complete"})
                if phase == "shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request_headers = {"authorization": _header(scope, "authorization") or ""}
        status, content = api.handle(scope["method"], scope["path"], request_headers, body)
        response_headers = [(b"content-type", b"application/json")] if content else []
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": content})

    return ASGIAuditMiddleware(app)  # the one line
