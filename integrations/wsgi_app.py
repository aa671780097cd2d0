"""Plain WSGI example: the pods API with one line of auditing, no web framework.

python -m integrations.wsgi_app          # serves on 127.0.0.1:8001; records as JSON lines on stdout
curl -X POST 127.0.0.1:8001/pods -H 'Authorization: Bearer demo-token-alice' -d '{"name": "web"}'
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import make_server

from audit_middleware import AuditMiddleware
from audit_middleware.sinks import JsonLinesSink, Sink
from integrations import plain_api, pods

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def _header(environ: Any, name: str) -> str | None:
    value: str | None = environ.get("HTTP_" + name.upper().replace("-", "_"))
    return value


def create_app(sink: Sink | None = None, tokens: pods.Tokens | None = None) -> WSGIApplication:
    """The example app, audited into ``sink`` (default: stdout)."""
    api = plain_api.PodsAPI(tokens or pods.Tokens())
    plain_api.configure_auditing(sink or JsonLinesSink.stdout(), api.tokens, _header)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        request_headers = {"authorization": _header(environ, "authorization") or ""}
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        status, content = api.handle(method, path, request_headers, body)
        # a 204 carries no body, so no Content-Type either (PEP 3333 validators check it)
        response_headers = [("Content-Type", "application/json")] if content else []
        start_response(f"{status} {HTTPStatus(status).phrase}", response_headers)
        return [content]

    return AuditMiddleware(app)  # the one line


if __name__ == "__main__":
    with make_server("127.0.0.1", int(os.environ.get("PORT", "8001")), create_app()) as server:
        server.serve_forever()
