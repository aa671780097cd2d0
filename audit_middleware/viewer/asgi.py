"""The viewer as a plain ASGI application, and mounted below a path of any ASGI app.

    app = mount_asgi(app, "/audit", AuditViewer(authorize=who_may_read))

``authorize`` receives the ASGI scope. The viewer's work (store reads, the export)
runs in a worker thread, so the event loop never waits on the store; the context is
copied into it, so the audit middleware's request context is seen there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from audit_middleware.viewer.core import AuditViewer
from audit_middleware.viewer.http import (
    MAX_FORM_BYTES,
    ViewerRequest,
    ViewerResponse,
    parse_form,
    parse_query,
)

__all__ = ["asgi_app", "mount_asgi"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk: bytes = message.get("body", b"")
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return b""  # no form of the viewer is this big: read nothing of it
        if not message.get("more_body"):
            return body


def viewer_request(scope: Scope, body: bytes, native: Any) -> ViewerRequest:
    """The viewer's request for an ASGI HTTP scope."""
    headers = {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", ())
    }
    root = str(scope.get("root_path", "")).rstrip("/")
    path = str(scope.get("path", ""))
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]  # servers differ in whether path includes root_path
    client = scope.get("client")
    return ViewerRequest(
        method=str(scope.get("method", "GET")).upper(),
        base=root,
        path=path,
        query=parse_query(bytes(scope.get("query_string", b"")).decode("utf-8", "replace")),
        headers=headers,
        form=parse_form(headers.get("content-type"), body) if body else {},
        peer=client[0] if client else None,
        secure=scope.get("scheme") in ("https", "wss"),
        native=native,
    )


async def send_response(response: ViewerResponse, send: Send) -> None:
    """Write ``response``, pulling a streamed body chunk by chunk in a worker thread."""
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response.headers]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    if isinstance(response.body, bytes):
        await send({"type": "http.response.body", "body": response.body})
        return
    chunks = response.chunks()
    try:
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        await asyncio.to_thread(chunks.close)  # a cancelled download still records its export


def asgi_app(viewer: AuditViewer) -> ASGIApp:
    """``viewer`` as an ASGI application (mount it with ``mount_asgi`` or a router)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # nothing to start or stop
            while True:
                phase = (await receive())["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{phase}.complete"})
                if phase == "shutdown":
                    return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        body = await _read_body(receive) if scope.get("method") == "POST" else b""
        response = await asyncio.to_thread(viewer.handle, viewer_request(scope, body, scope))
        await send_response(response, send)

    return app


def mount_asgi(app: ASGIApp, prefix: str, viewer: AuditViewer) -> ASGIApp:
    """``app`` with ``viewer`` answering every HTTP path below ``prefix`` (e.g. ``"/audit"``)."""
    prefix = "/" + prefix.strip("/")
    inner = asgi_app(viewer)

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] == "http" and (path == prefix or path.startswith(prefix + "/")):
            root = str(scope.get("root_path", "")).rstrip("/")
            await inner({**scope, "root_path": root + prefix, "path": path[len(prefix) :]}, receive, send)
        else:
            await app(scope, receive, send)

    return dispatch
