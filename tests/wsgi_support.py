"""Driving WSGI apps through the audit middleware with ``wsgiref.validate`` on both sides.

Every request goes ``validator(AuditMiddleware(validator(app)))``: the inner validator
checks what the app hands the middleware, the outer one what the middleware hands the
server. WSGI warnings are errors while a request runs, so a request that passes made
none; the response iterable is always closed, as PEP 3333 servers must.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import WSGIWarning, validator

from audit_middleware import AuditMiddleware

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass
class Response:
    """What the (test) server received."""

    status: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def code(self) -> int:
        """The status code as a number."""
        return int(self.status[:3])


def make_environ(
    method: str = "POST",
    path: str = "/pods",
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A complete WSGI environ; header names like ``User-Agent`` become ``HTTP_USER_AGENT``."""
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ["REQUEST_METHOD"] = method
    environ["PATH_INFO"] = path
    environ["REMOTE_ADDR"] = "192.0.2.10"
    environ["QUERY_STRING"] = ""
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    environ.update(extra)
    return environ


def wrap(app: WSGIApp) -> WSGIApp:
    """The app behind the middleware, with a validator on each side."""
    return validator(AuditMiddleware(validator(app)))  # type: ignore[arg-type, no-any-return]


def serve(app: WSGIApp, environ: dict[str, Any], *, wrapped: bool = False) -> Response:
    """Run one request like a server: call, iterate, always close; WSGI warnings raise."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", WSGIWarning)
        return serve_unguarded(app if wrapped else wrap(app), environ)


def serve_unguarded(stack: WSGIApp, environ: dict[str, Any]) -> Response:
    """``serve`` without touching the (process-wide) warning filters, for use in threads.

    The caller turns WSGI warnings into errors around all its threads instead.
    """
    started: list[Any] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[..., Any]:
        started[:] = [status, headers]
        return lambda data: None

    result = stack(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return Response(started[0], started[1], body)


def request(app: WSGIApp, method: str = "POST", path: str = "/pods", **kwargs: Any) -> Response:
    """``serve`` with a fresh environ."""
    return serve(app, make_environ(method, path, **kwargs))


def simple_app(
    status: str = "200 OK", body: bytes = b"ok", action: Callable[[dict[str, Any]], None] | None = None
) -> WSGIApp:
    """A WSGI app answering ``status`` with ``body``, running ``action(environ)`` first."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if action is not None:
            action(environ)
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return app
