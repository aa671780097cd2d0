"""The viewer as a plain WSGI application, and mounted below a path of any WSGI app.

    app = mount_wsgi(app, "/audit", AuditViewer(authorize=who_may_read))

``authorize`` receives the WSGI environ. Behind ``mount_wsgi`` (or any dispatcher that
sets ``SCRIPT_NAME``) the viewer's links follow the mount path.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from audit_middleware.viewer.core import AuditViewer
from audit_middleware.viewer.http import (
    MAX_FORM_BYTES,
    ViewerRequest,
    ViewerResponse,
    parse_form,
    parse_query,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["mount_wsgi", "wsgi_app"]


def _text(value: str) -> str:
    """A WSGI string (bytes read as latin-1, PEP 3333) as the UTF-8 text the client sent."""
    return value.encode("latin-1").decode("utf-8", "replace")


def viewer_request(environ: WSGIEnvironment) -> ViewerRequest:
    """The viewer's request for a WSGI environ (the body read only for a form POST)."""
    headers = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    form: dict[str, list[str]] = {}
    if environ.get("REQUEST_METHOD") == "POST":
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if 0 < length <= MAX_FORM_BYTES:
            form = parse_form(environ.get("CONTENT_TYPE"), environ["wsgi.input"].read(length))
    return ViewerRequest(
        method=str(environ.get("REQUEST_METHOD", "GET")).upper(),
        base=_text(environ.get("SCRIPT_NAME", "")).rstrip("/"),
        path=_text(environ.get("PATH_INFO", "")),
        query=parse_query(_text(environ.get("QUERY_STRING", ""))),
        headers=headers,
        form=form,
        peer=environ.get("REMOTE_ADDR"),
        secure=environ.get("wsgi.url_scheme") == "https",
        native=environ,
    )


class _Body:
    """The response body as a WSGI iterable whose ``close`` closes a streamed export."""

    def __init__(self, response: ViewerResponse) -> None:
        self._response = response

    def __iter__(self) -> Generator[bytes, None, None]:
        return self._response.chunks()

    def close(self) -> None:
        self._response.close()


def wsgi_app(viewer: AuditViewer) -> WSGIApplication:
    """``viewer`` as a WSGI application (mount it with ``mount_wsgi`` or a dispatcher)."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        response = viewer.handle(viewer_request(environ))
        start_response(f"{response.status} {HTTPStatus(response.status).phrase}", response.headers)
        return _Body(response)

    return app


def mount_wsgi(app: WSGIApplication, prefix: str, viewer: AuditViewer) -> WSGIApplication:
    """``app`` with ``viewer`` answering every path below ``prefix`` (e.g. ``"/audit"``)."""
    prefix = "/" + prefix.strip("/")
    inner = wsgi_app(viewer)

    def dispatch(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if path == prefix or path.startswith(prefix + "/"):
            scoped: dict[str, Any] = dict(environ)
            scoped["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "").rstrip("/") + prefix
            scoped["PATH_INFO"] = path[len(prefix) :]
            return inner(scoped, start_response)
        return app(environ, start_response)

    return dispatch
