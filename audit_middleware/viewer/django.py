"""The viewer as a Django URLconf to include.

    path("audit/", include(audit_urls(AuditViewer(authorize=who_may_read))))

``authorize`` receives the ``HttpRequest`` (``request.user`` is set by Django's
authentication middleware). The view is exempt from Django's CSRF middleware because
the viewer checks its one POST (the export) itself: a double-submit token bound to the
page, and same-origin fetch metadata.
"""

from __future__ import annotations

from typing import Any

from audit_middleware.errors import MissingDependencyError

try:
    from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
    from django.urls import URLPattern, re_path
    from django.views.decorators.csrf import csrf_exempt
except ImportError as exc:  # the one clear message this mount's users need
    raise MissingDependencyError(
        "audit_middleware.viewer.django needs Django, which is not installed: "
        "pip install opensearch-audit-middleware[django,viewer]"
    ) from exc

from audit_middleware.viewer.core import AuditViewer
from audit_middleware.viewer.http import MAX_FORM_BYTES, ViewerRequest, parse_form, parse_query

__all__ = ["audit_urls"]


def audit_urls(viewer: AuditViewer) -> tuple[list[URLPattern], str]:
    """The URL patterns serving ``viewer`` (and their app name), for ``include()``."""

    def serve(request: HttpRequest, path: str = "") -> HttpResponse | StreamingHttpResponse:
        full = request.path
        base = full[: len(full) - len(path)].rstrip("/")
        body = b""
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if request.method == "POST" and length <= MAX_FORM_BYTES:
            body = request.body
        answer = viewer.handle(
            ViewerRequest(
                method=str(request.method),
                base=base,
                path="/" + path,
                query=parse_query(request.META.get("QUERY_STRING", "")),
                headers={name.lower(): value for name, value in request.headers.items()},
                form=parse_form(request.content_type, body) if body else {},
                peer=request.META.get("REMOTE_ADDR"),
                secure=request.is_secure(),
                native=request,
            )
        )
        response: Any
        if isinstance(answer.body, bytes):
            response = HttpResponse(answer.body, status=answer.status)
        else:
            response = StreamingHttpResponse(answer.chunks(), status=answer.status)
        del response["Content-Type"]
        for header, value in answer.headers:
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                response.cookies[name] = rest.partition(";")[0]
                for attribute in rest.split(";")[1:]:
                    key, _, setting = attribute.strip().partition("=")
                    response.cookies[name][key.lower()] = setting or True
            else:
                response[header] = value
        return response

    view: Any = csrf_exempt(serve)
    return [re_path(r"^(?P<path>.*)$", view, name="audit_viewer")], "audit_viewer"
