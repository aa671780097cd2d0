# flask-login ships no type hints, so login_required is an untyped decorator.
# mypy: disable-error-code="untyped-decorator"
"""Flask example: a small pods API with an audit trail.

Run it (records go to the embedded store, ./audit.sqlite3, unless the environment says
otherwise; see ``audit_middleware.env``)::

    python -m integrations.flask_app
    curl -X POST 127.0.0.1:5000/pods -H 'Authorization: Bearer demo-token-alice' \\
         -H 'Content-Type: application/json' -d '{"name": "web", "image": "nginx:1.27"}'

Users log in with a session (flask-login) or send an API token; the audit extension takes
the actor from flask-login either way, since flask-login's ``request_loader`` reads the
bearer token. The tenant is the user's organization, else the ``X-Tenant-ID`` header.

The Audit Logs page is mounted at ``/audit/`` (one line, below): a logged-in user sees
their organization's log. ``viewer_tokens`` also lets it open by signed viewer link.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, abort, jsonify, request
from flask_login import LoginManager, current_user, login_required, login_user, logout_user

from audit_middleware import Actor, Resource, configure, diff, record
from audit_middleware.frameworks.flask import AuditExtension
from audit_middleware.sinks import JsonLinesSink, Sink
from audit_middleware.sinks.defaults import default_sink
from audit_middleware.viewer import Access, AuditViewer, ViewerTokens
from audit_middleware.viewer.flask import audit_blueprint
from integrations import pods


def tenant_of(req: Any) -> str | None:
    """The tenant of a request: the user's organization, else the X-Tenant-ID header."""
    user = current_user._get_current_object() if current_user else None
    if user is not None and user.is_authenticated:
        org: str = user.org
        return org
    header: str | None = req.headers.get("X-Tenant-ID")
    return header


def audit_access(_request: Any) -> Access | None:
    """Who may read which audit log: a logged-in user, their own organization's."""
    user = current_user._get_current_object() if current_user else None
    if user is None or not user.is_authenticated:
        return None
    reader = Actor(user.id, user.username, user.email, user.roles)
    return Access(user.org, reader, tenant_name=user.org.capitalize())


def create_app(  # noqa: PLR0915 - one view per action
    sink: Sink | None = None,
    tokens: pods.Tokens | None = None,
    viewer_tokens: ViewerTokens | None = None,
    poll_interval: float = 5.0,
) -> Flask:
    """The example app; ``sink`` receives the audit records (default: stdout).

    The Audit Logs page reads the store ``sink`` writes (SQLite or OpenSearch).
    """
    configure(sink=sink or JsonLinesSink.stdout(), rules=pods.RULES, tenant_resolver=tenant_of)
    app = Flask(__name__)
    app.secret_key = os.environ.get("FLASK_SECRET_KEY", "dev-only-not-secret")
    store = pods.PodStore()
    tokens = tokens or pods.Tokens()

    login_manager = LoginManager(app)
    login_manager.user_loader(pods.user_by_id)

    @login_manager.request_loader
    def user_from_token(req: Any) -> pods.User | None:
        return tokens.user_for_header(req.headers.get("Authorization"))

    @login_manager.unauthorized_handler
    def unauthorized() -> tuple[Response, int]:
        return jsonify(error="login required"), 401

    AuditExtension(app)
    viewer = AuditViewer(authorize=audit_access, tokens=viewer_tokens, poll_interval=poll_interval)
    app.register_blueprint(audit_blueprint(viewer), url_prefix="/audit")  # the Audit Logs page
    app.extensions["audit_viewer"] = viewer

    def own_pod(pod_id: str) -> dict[str, Any]:
        pod = store.get(pod_id, current_user.org)
        if pod is None:
            abort(404)
        return pod

    @app.post("/login")
    def login() -> Any:
        form = request.get_json(silent=True) or request.form
        user = pods.check_password(str(form.get("username", "")), str(form.get("password", "")))
        if user is None:
            attempted = pods.USERS.get(str(form.get("username", "")))
            username = str(form.get("username", ""))[:256]
            # the account that was tried (not authenticated): lets alerts group failures by user
            tried = Actor(attempted.id, username, attempted.email) if attempted else Actor(name=username)
            record(
                "login_failed",
                resource=Resource("session"),
                actor=tried,
                details={"username": username},
                tenant=attempted.org if attempted else None,  # the targeted account's tenant
            )
            return jsonify(error="wrong username or password"), 401
        login_user(user)
        record("login", resource=Resource("session"))
        return jsonify(user=user.username)

    @app.post("/logout")
    @login_required
    def logout() -> Any:
        record("logout", resource=Resource("session"), tenant=current_user.org)
        logout_user()  # the extension still records who it was
        return "", 204

    @app.post("/tokens")
    @login_required
    def create_token() -> Any:
        token = tokens.issue(current_user._get_current_object())
        record("token_created", resource=Resource("api_token", token[:6]))
        return jsonify(token=token), 201

    @app.get("/pods")
    @login_required
    def list_pods() -> Any:
        return jsonify(pods=store.in_org(current_user.org))

    @app.post("/pods")
    @login_required
    def create_pod() -> Any:
        body = request.get_json(force=True)
        pod = store.create(current_user.org, body["name"], body["image"], int(body.get("cpu", 1)))
        record("create", resource=pods.resource(pod))
        return jsonify(pod), 201

    @app.get("/pods/<pod_id>")
    @login_required
    def get_pod(pod_id: str) -> Any:
        return jsonify(own_pod(pod_id))

    @app.patch("/pods/<pod_id>")
    @login_required
    def update_pod(pod_id: str) -> Any:
        result = store.update(pod_id, current_user.org, request.get_json(force=True))
        if result is None:
            abort(404)
        before, after = result
        record("update", resource=pods.resource(after), changes=diff(before, after))
        return jsonify(after)

    @app.post("/pods/<pod_id>/start")
    @login_required
    def start_pod(pod_id: str) -> Any:  # audited by the route rule
        return jsonify(store.set_status(own_pod(pod_id)["id"], current_user.org, "running"))

    @app.post("/pods/<pod_id>/stop")
    @login_required
    def stop_pod(pod_id: str) -> Any:
        return jsonify(store.set_status(own_pod(pod_id)["id"], current_user.org, "stopped"))

    @app.post("/pods/<pod_id>/restart")
    @login_required
    def restart_pod(pod_id: str) -> Response:
        pod = own_pod(pod_id)

        def progress() -> Iterator[str]:  # streamed: the record is sent when the stream closes
            yield from pods.restart_steps(pod)

        return Response(progress(), mimetype="text/plain")

    @app.delete("/pods/<pod_id>")
    @login_required
    def delete_pod(pod_id: str) -> Any:
        pod = store.delete(own_pod(pod_id)["id"], current_user.org)
        assert pod is not None
        record("delete", resource=pods.resource(pod))
        return "", 204

    return app


if __name__ == "__main__":
    create_app(sink=default_sink()).run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
