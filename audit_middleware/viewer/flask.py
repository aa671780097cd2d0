"""The viewer as a Flask blueprint.

    app.register_blueprint(audit_blueprint(AuditViewer(authorize=who_may_read)), url_prefix="/audit")

``authorize`` receives ``flask.request``; flask-login's ``current_user`` works inside it.
"""

from __future__ import annotations

from typing import Any

from audit_middleware.errors import MissingDependencyError

try:
    import flask
except ImportError as exc:  # the one clear message this mount's users need
    raise MissingDependencyError(
        "audit_middleware.viewer.flask needs Flask, which is not installed: "
        "pip install opensearch-audit-middleware[flask,viewer]"
    ) from exc

from audit_middleware.viewer.core import AuditViewer
from audit_middleware.viewer.http import MAX_FORM_BYTES, ViewerRequest, parse_form, parse_query

__all__ = ["audit_blueprint"]


def audit_blueprint(viewer: AuditViewer, *, name: str = "audit_viewer") -> flask.Blueprint:
    """A blueprint serving ``viewer``; register it with the ``url_prefix`` it should live at."""
    blueprint = flask.Blueprint(name, __name__)

    def serve(path: str = "") -> flask.Response:
        request = flask.request
        full = request.path
        # the mount path is whatever precedes the matched rest (url_prefix, script root)
        base = request.script_root + full[: len(full) - len(path)].rstrip("/")
        body = b""
        if request.method == "POST" and (request.content_length or 0) <= MAX_FORM_BYTES:
            body = request.get_data(cache=False)
        answer = viewer.handle(
            ViewerRequest(
                method=request.method,
                base=base,
                path="/" + path,
                query=parse_query(request.query_string.decode("utf-8", "replace")),
                headers={name.lower(): value for name, value in request.headers.items()},
                form=parse_form(request.content_type, body) if body else {},
                peer=request.remote_addr,
                secure=request.scheme == "https",
                native=request,
            )
        )
        response = flask.Response(answer.chunks(), status=answer.status)
        response.headers.clear()
        for header, value in answer.headers:
            response.headers.add(header, value)
        return response

    options: dict[str, Any] = {"methods": ["GET", "POST"]}
    blueprint.add_url_rule("/", "page", serve, **options)
    blueprint.add_url_rule("/<path:path>", "path", serve, **options)
    return blueprint
