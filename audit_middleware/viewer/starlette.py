"""The viewer as a Starlette router, for FastAPI and Starlette apps.

    app.mount("/audit", audit_router(AuditViewer(authorize=who_may_read)))   # FastAPI or Starlette
    Mount("/audit", audit_router(viewer))                                    # in a Starlette route list

``authorize`` receives the ``starlette.requests.Request`` (its session, ``request.user``
with Starlette's authentication middleware, cookies, headers). The store is read in a
worker thread.
"""

from __future__ import annotations

from audit_middleware.errors import MissingDependencyError

try:
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route, Router
except ImportError as exc:  # the one clear message this mount's users need
    raise MissingDependencyError(
        "audit_middleware.viewer.starlette needs Starlette, which is not installed: "
        "pip install opensearch-audit-middleware[fastapi,viewer]"
    ) from exc

from audit_middleware.viewer.asgi import viewer_request
from audit_middleware.viewer.core import AuditViewer
from audit_middleware.viewer.http import MAX_FORM_BYTES

__all__ = ["audit_router"]


def audit_router(viewer: AuditViewer) -> Router:
    """A router serving ``viewer``; mount it at the path it should live at."""

    async def serve(request: Request) -> Response:
        body = b""
        if request.method == "POST" and int(request.headers.get("content-length") or 0) <= MAX_FORM_BYTES:
            body = await request.body()
        answer = await run_in_threadpool(viewer.handle, viewer_request(request.scope, body, request))
        response: Response
        if isinstance(answer.body, bytes):
            response = Response(answer.body, status_code=answer.status)
        else:
            response = StreamingResponse(answer.chunks(), status_code=answer.status)
        response.raw_headers = [
            (name, value) for name, value in response.raw_headers if name == b"content-length"
        ] + [(header.lower().encode("latin-1"), value.encode("latin-1")) for header, value in answer.headers]
        return response

    return Router(routes=[Route("/{path:path}", serve, methods=["GET", "POST"])])
