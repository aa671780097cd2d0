"""The Flask adapter, through the example app and Flask's own test client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

flask = pytest.importorskip("flask")
flask_login = pytest.importorskip("flask_login")

from flask.testing import FlaskClient  # noqa: E402

from audit_middleware import Actor, Resource, Scope, configure, current, record, set_actor  # noqa: E402
from audit_middleware.capture import wsgi  # noqa: E402
from audit_middleware.capture.context import in_request, opened  # noqa: E402
from audit_middleware.capture.wsgi import AuditMiddleware  # noqa: E402
from audit_middleware.frameworks.flask import (  # noqa: E402
    AuditExtension,
    actor_from_user,
    audit_login,
    audit_login_failed,
)
from audit_middleware.sinks import MemorySink  # noqa: E402
from audit_middleware.testing import CapturedEvents, capture_events  # noqa: E402
from integrations import pods  # noqa: E402
from integrations.flask_app import create_app  # noqa: E402
from tests.frameworks.support import ALICE_TOKEN, only  # noqa: E402
from tests.worker_support import building_threads  # noqa: E402


@pytest.fixture
def app() -> flask.Flask:
    app = create_app(sink=MemorySink())
    app.config["TESTING"] = True  # exceptions propagate to the test, as the brief asks to check

    @app.post("/pods/<pod_id>/explode")
    def explode(pod_id: str) -> str:
        raise RuntimeError(f"pod {pod_id} exploded")

    return app


@pytest.fixture
def client(app: flask.Flask) -> FlaskClient:
    return app.test_client()


def create_pod(client: FlaskClient, headers: dict[str, str] = ALICE_TOKEN) -> str:
    response = client.post("/pods", json={"name": "web", "image": "nginx:1.27"}, headers=headers)
    assert response.status_code == 201
    pod_id: str = response.json["id"]
    return pod_id


def test_session_user_from_flask_login_is_the_actor(client: FlaskClient, events: CapturedEvents) -> None:
    """After a session login, flask-login's current_user is the record's actor."""
    assert client.post("/login", json={"username": "bob", "password": "builder"}).status_code == 200
    create_pod(client, headers={})  # the session cookie only, no token
    login, create = (event.to_document() for event in events)
    assert login["event"]["action"] == "login"
    assert create["event"]["action"] == "create"
    for document in (login, create):
        assert document["user"] == {"id": "u-2", "name": "bob", "email": "bob@globex.example"}
        assert document["organization"] == {"id": "globex"}


def test_bearer_token_user_is_the_actor(client: FlaskClient, events: CapturedEvents) -> None:
    """A request authenticated by ``Authorization: Bearer`` records the token's user."""
    create_pod(client)
    document = only(events)
    assert document["user"]["id"] == "u-1"
    assert document["user"]["roles"] == ["admin"]
    assert document["organization"] == {"id": "acme"}
    assert document["audit"]["resource"]["type"] == "pod"


def test_route_template_and_rule_action(client: FlaskClient, events: CapturedEvents) -> None:
    """The URL rule is recorded as the route; the start rule names action and pod."""
    pod_id = create_pod(client)
    events.clear()
    assert client.post(f"/pods/{pod_id}/start", headers=ALICE_TOKEN).status_code == 200
    document = only(events)
    assert document["audit"]["http"]["route"] == "/pods/<pod_id>/start"
    assert document["event"]["action"] == "start"
    assert document["audit"]["resource"] == {"type": "pod", "id": pod_id}
    assert document["url"]["path"] == f"/pods/{pod_id}/start"


def test_update_records_the_change(client: FlaskClient, events: CapturedEvents) -> None:
    """An update's record holds previous values, new values and the modified fields."""
    pod_id = create_pod(client)
    events.clear()
    client.patch(f"/pods/{pod_id}", json={"name": "web-2", "spec": {"cpu": 2}}, headers=ALICE_TOKEN)
    changes = only(events)["audit"]["changes"]
    assert changes == {
        "before": {"name": "web", "spec": {"cpu": 1}},
        "after": {"name": "web-2", "spec": {"cpu": 2}},
        "fields": ["name", "spec.cpu"],
    }


def test_get_is_not_audited(client: FlaskClient, events: CapturedEvents) -> None:
    """Reading pods leaves no record."""
    pod_id = create_pod(client)
    events.clear()
    assert client.get("/pods", headers=ALICE_TOKEN).status_code == 200
    assert client.get(f"/pods/{pod_id}", headers=ALICE_TOKEN).status_code == 200
    assert events == []


def test_exception_is_a_500_failure_and_propagates(client: FlaskClient, events: CapturedEvents) -> None:
    """A view's exception reaches the caller; the record says 500 failure, with actor and route."""
    with pytest.raises(RuntimeError, match="exploded"):
        client.post("/pods/p-1/explode", headers=ALICE_TOKEN)
    document = only(events)
    assert document["event"]["outcome"] == "failure"
    assert document["http"]["response"]["status_code"] == 500
    assert document["user"]["id"] == "u-1"  # resolved in teardown, inside the request context
    assert document["organization"] == {"id": "acme"}
    assert document["audit"]["http"]["route"] == "/pods/<pod_id>/explode"


def test_handled_exception_is_a_500_failure(
    app: flask.Flask, client: FlaskClient, events: CapturedEvents
) -> None:
    """In production mode Flask answers 500 itself; the record says so."""
    app.config["TESTING"] = False
    assert client.post("/pods/p-1/explode", headers=ALICE_TOKEN).status_code == 500
    document = only(events)
    assert document["event"]["outcome"] == "failure"
    assert document["http"]["response"]["status_code"] == 500
    assert document["user"]["id"] == "u-1"


def test_streamed_response_is_recorded_once_when_closed(client: FlaskClient, events: CapturedEvents) -> None:
    """A streamed restart is recorded once, when the server closes the response."""
    pod_id = create_pod(client)
    events.clear()
    response = client.post(f"/pods/{pod_id}/restart", headers=ALICE_TOKEN, buffered=False)
    assert events == []  # still streaming
    assert response.get_data(as_text=True).endswith("running\n")
    response.close()
    document = only(events)
    assert document["event"]["action"] == "restart"
    assert document["user"]["id"] == "u-1"


def test_logout_records_who_logged_out(client: FlaskClient, events: CapturedEvents) -> None:
    """logout_user() clears current_user, yet the logout record names the user."""
    client.post("/login", json={"username": "alice", "password": "wonderland"})
    events.clear()
    assert client.post("/logout").status_code == 204
    document = only(events)
    assert document["event"]["action"] == "logout"
    assert document["user"]["id"] == "u-1"


def test_failed_login_names_the_tried_account_and_its_tenant(
    client: FlaskClient, events: CapturedEvents
) -> None:
    """A wrong password: a login_failed failure naming the account tried, in that account's tenant."""
    response = client.post("/login", json={"username": "bob", "password": "nope"})
    assert response.status_code == 401
    document = only(events)
    assert document["event"]["action"] == "login_failed"
    assert document["event"]["outcome"] == "failure"
    assert document["user"] == {"id": "u-2", "name": "bob", "email": "bob@globex.example"}
    assert document["organization"] == {"id": "globex"}


def test_failed_login_for_unknown_user_takes_the_tenant_header(
    client: FlaskClient, events: CapturedEvents
) -> None:
    """An unknown username: the claimed name is recorded, the tenant comes from the header."""
    response = client.post(
        "/login", json={"username": "mallory", "password": "x"}, headers={"X-Tenant-ID": "globex"}
    )
    assert response.status_code == 401
    document = only(events)
    assert document["user"] == {"name": "mallory"}
    assert document["organization"] == {"id": "globex"}


# --- the extension without flask-login, on a bare app -------------------------------------


def bare_app(extension: AuditExtension) -> flask.Flask:
    app = flask.Flask("bare")
    extension.init_app(app)

    @app.post("/things/<thing_id>")
    def change(thing_id: str) -> str:
        flask.g.user = flask.request.headers.get("X-User")
        return thing_id

    return app


@pytest.fixture
def sink() -> MemorySink:
    sink = MemorySink()
    configure(sink=sink)
    return sink


def test_actor_resolver_without_flask_login(sink: MemorySink) -> None:
    """Without flask-login the callback finds the actor, given the Flask request in its context."""
    seen: list[object] = []

    def resolver(request: flask.Request) -> Actor | None:
        seen.append((type(request), flask.has_request_context()))
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return Actor(id=token, kind="api_token") if token else None

    bare_app(AuditExtension(actor_resolver=resolver)).test_client().post("/things/1", headers=ALICE_TOKEN)
    (event,) = sink.events
    assert event.actor == Actor(id="demo-token-alice", kind="api_token")
    assert seen == [(flask.Request, True)]


def test_core_resolves_inside_the_flask_request_context(sink: MemorySink) -> None:
    """Flask calls start_response inside its request context: configured resolvers see ``g``."""
    configure(
        sink=sink, actor_resolver=lambda request: Actor(id=flask.g.user), tenant_resolver=lambda r: "t-1"
    )
    bare_app(AuditExtension()).test_client().post("/things/1", headers={"X-User": "carol"})
    (event,) = sink.events
    assert event.actor.id == "carol"
    assert event.tenant is not None
    assert event.tenant.id == "t-1"
    assert event.request is not None
    assert event.request.route == "/things/<thing_id>"


def test_init_app_twice_wraps_once(sink: MemorySink) -> None:
    """A second init_app on the same app adds no second middleware (no duplicate records)."""
    extension = AuditExtension()
    app = bare_app(extension)
    extension.init_app(app)
    assert isinstance(app.wsgi_app, AuditMiddleware)
    assert not isinstance(app.wsgi_app.app, AuditMiddleware)
    app.test_client().post("/things/1")
    assert len(sink.events) == 1


def test_broken_mapper_costs_neither_request_nor_record(app: flask.Flask, events: CapturedEvents) -> None:
    """A user mapper that raises is logged; the request succeeds and is recorded."""

    def broken(user: Any) -> Actor | None:
        raise LookupError("directory down")

    app.extensions["audit_middleware"].user_mapper = broken
    response = app.test_client().post("/pods", json={"name": "web", "image": "nginx"}, headers=ALICE_TOKEN)
    assert response.status_code == 201
    assert only(events)["user"] == {"name": "anonymous"}


def test_explicit_set_actor_wins(app: flask.Flask, events: CapturedEvents) -> None:
    """An actor the view sets itself is not replaced by flask-login's user."""

    @app.post("/impersonate")
    def impersonate() -> str:
        set_actor(Actor(id="svc-1", kind="service"))
        record("restart")
        return "ok"

    app.test_client().post("/impersonate", headers=ALICE_TOKEN)
    assert only(events)["user"] == {"id": "svc-1"}


def test_default_mapper_reads_flask_login_attributes() -> None:
    """actor_from_user reads get_id(), name or username, email and roles."""

    class User:
        username = "ann"
        email = "ann@example.com"
        roles = ("ops",)

        def get_id(self) -> str:
            return "7"

    assert actor_from_user(User()) == Actor(id="7", name="ann", email="ann@example.com", roles=("ops",))


@pytest.fixture(autouse=True)
def _no_request_context_left() -> Iterator[None]:
    yield
    assert not flask.has_request_context()


# --- flask-login's signals and the login one-liners ----------------------------------------


def login_app() -> flask.Flask:
    """A bare app with flask-login: a form login that says when it failed, and logouts."""
    app = flask.Flask("logins")
    app.secret_key = "test-only"
    manager = flask_login.LoginManager(app)
    manager.login_view = "login"
    manager.user_loader(pods.user_by_id)
    AuditExtension(app)

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        user = pods.check_password(
            flask.request.form.get("username", ""), flask.request.form.get("password", "")
        )
        if user is None:
            audit_login_failed(flask.request.form.get("username"), reason="bad password")
            return "wrong username or password", 200  # the form again
        flask_login.login_user(user)
        return flask.redirect("/")

    @app.route("/logout", methods=["GET", "POST"])
    def logout() -> Any:
        flask_login.logout_user()
        return flask.redirect("/login")

    @app.post("/things")
    @flask_login.login_required
    def create_thing() -> str:
        return "created"

    return app


def test_login_user_is_a_login_by_the_user(sink: MemorySink) -> None:
    """login_user() (flask-login's signal) gives one Login naming the user, no generic record."""
    login_app().test_client().post("/login", data={"username": "dave", "password": "diver"})
    (event,) = sink.events
    assert (event.action.id, event.actor.name, event.outcome) == ("login", "dave", "success")


def test_failed_login_one_liner_names_the_attempted_user(sink: MemorySink) -> None:
    """audit_login_failed() in the view: Login Failed by the attempted name, with the reason."""
    login_app().test_client().post("/login", data={"username": "dave", "password": "guess"})
    (event,) = sink.events
    assert (event.action.id, event.actor.name, event.outcome) == ("login_failed", "dave", "failure")
    assert event.details == {"username": "dave", "reason": "bad password"}


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_get_and_post_logouts_name_who_logged_out(sink: MemorySink, method: str) -> None:
    """logout_user() by a link or a form: one Logout naming the user."""
    client = login_app().test_client()
    client.post("/login", data={"username": "dave", "password": "diver"})
    client.open("/logout", method=method)
    assert [(e.action.id, e.actor.name) for e in sink.events] == [("login", "dave"), ("logout", "dave")]


def test_login_required_refusal_is_a_failure(sink: MemorySink) -> None:
    """An anonymous POST that login_required turns away (302 to the login page) is no success."""
    response = login_app().test_client().post("/things")
    assert response.status_code == 302
    (event,) = sink.events
    assert (event.outcome, event.details) == ("failure", {"reason": "login required"})


def test_audit_login_one_liner_makes_the_request_the_users(sink: MemorySink) -> None:
    """audit_login(user) (apps without flask-login) records a Login and names the request's user."""
    app = bare_app(AuditExtension())

    @app.post("/session")
    def session() -> str:
        audit_login(pods.USERS["erin"])
        return "ok"

    app.test_client().post("/session")
    (event,) = sink.events
    assert (event.action.id, event.actor.id, event.actor.name) == ("login", "u-4", "erin")


def test_actor_resolver_may_return_the_apps_user_object(sink: MemorySink) -> None:
    """A callback handing back the app's own user (``g.user``) is mapped: id, username, email."""

    class AppUser:
        id = 12
        username = "zoe"
        email = "zoe@example.com"

    bare_app(AuditExtension(actor_resolver=lambda request: AppUser())).test_client().post("/things/1")
    (event,) = sink.events
    assert event.actor == Actor(id="12", name="zoe", email="zoe@example.com")


def test_records_do_not_wait_for_a_body_nobody_reads(sink: MemorySink) -> None:
    """A test client that never reads the body (so never closes it) still gets the record,
    for a view's own response and for an abort(403) alike; a streamed body still waits."""
    app = flask.Flask("unread")
    AuditExtension(app)

    @app.post("/ok")
    def ok() -> str:
        return "done"

    @app.post("/refused")
    def refused() -> str:
        flask.abort(403)

    @app.post("/stream")
    def stream() -> flask.Response:
        return flask.Response(iter_lines())

    def iter_lines() -> Iterator[str]:
        yield "one\n"

    client = FlaskClient(app)
    assert client.post("/ok").status_code == 200
    assert client.post("/refused").status_code == 403
    streamed = client.post("/stream")
    assert [(e.request.status_code if e.request else None) for e in sink.events] == [200, 403]
    streamed.close()
    assert len(sink.events) == 3


# -- Flask's stock test client: bodies that are never read -----------------------------


@pytest.fixture
def stock_client() -> FlaskClient:
    """Flask's own test client, unbuffered: a response's body is read only if the test reads it."""
    app = create_app(sink=MemorySink())
    app.config["TESTING"] = True

    @app.post("/forms/pods")
    def form_create() -> Any:
        return flask.redirect("/pods", code=303)  # a form app answers with a redirect

    @app.post("/forms/pods/<pod_id>/explode")
    def form_explode(pod_id: str) -> Any:
        flask.abort(400)

    @app.post("/pods/<pod_id>/logs")
    def logs(pod_id: str) -> Any:
        return flask.Response(flask.stream_with_context(iter([b"a", b"b"])))

    return app.test_client()


def test_the_stock_client_gets_a_record_for_every_unread_response(stock_client: FlaskClient) -> None:
    """Requests whose body the test never reads (only the status or Location) each get their record,
    while the responses are still referenced."""
    with capture_events() as events:
        kept = [
            stock_client.post("/forms/pods", headers=ALICE_TOKEN),
            stock_client.post("/forms/pods/p1/explode", headers=ALICE_TOKEN),
            stock_client.post("/pods", json={"name": "web", "image": "nginx"}, headers=ALICE_TOKEN),
            stock_client.delete("/pods/nope", headers=ALICE_TOKEN),
        ]
        assert [response.status_code for response in kept] == [303, 400, 201, 404]
        assert kept[0].headers["Location"] == "/pods"
        assert [(event.action.id, event.request.status_code) for event in events] == [  # type: ignore[union-attr]
            ("create", 303),
            ("create", 400),
            ("create", 201),
            ("delete", 404),
        ]
    assert [event.outcome for event in events] == ["success", "failure", "success", "failure"]


def test_a_streamed_response_is_recorded_when_it_ends(stock_client: FlaskClient) -> None:
    """A streamed body is recorded when it has been sent (its outcome depends on it), not before."""
    with capture_events() as events:
        response = stock_client.post("/pods/p1/logs", headers=ALICE_TOKEN)
        assert events == []
        assert response.get_data() == b"ab"
        response.close()
    assert len(events) == 1


def test_a_get_that_records_gets_the_route_request_and_user(app: flask.Flask, events: CapturedEvents) -> None:
    """A GET view that records builds its context then: the record has the URL rule, flask-login's
    (token) user and the tenant, as a POST would."""
    seen: list[object] = []

    @app.get("/pods/<pod_id>/logs")
    def logs(pod_id: str) -> str:
        seen.append(opened())
        record("audit_exported", resource=Resource("pod", pod_id))
        return "ok"

    assert app.test_client().get("/pods/p-9/logs", headers=ALICE_TOKEN).status_code == 200
    assert seen == [None]  # nothing had asked before the view
    document = only(events)
    assert document["audit"]["http"]["route"] == "/pods/<pod_id>/logs"
    assert document["user"]["id"] == "u-1"
    assert document["organization"] == {"id": "acme"}
    assert document["http"]["response"]["status_code"] == 200


def test_an_unaudited_get_builds_no_context_through_the_extension(
    app: flask.Flask, events: CapturedEvents
) -> None:
    """The extension's hooks leave a GET nobody audits without a context, from the first hook to teardown."""
    seen: list[object] = []

    @app.get("/quiet")
    def quiet() -> str:
        seen.append((in_request(), opened()))
        return "ok"

    app.teardown_request(lambda exc: seen.append(opened()))
    assert app.test_client().get("/quiet", headers=ALICE_TOKEN).status_code == 200
    assert seen == [(True, None), None]
    assert events == []


def test_an_earlier_hook_that_answers_still_leaves_the_user_and_route(sink: MemorySink) -> None:
    """A before_request hook registered before the extension's (a CSRF check) answers 403: the
    record still names flask-login's user and the route, read on the request thread."""
    app = flask.Flask("guarded")
    app.secret_key = "test"
    manager = flask_login.LoginManager(app)

    class User(flask_login.UserMixin):
        def __init__(self, user_id: str) -> None:
            self.id = user_id

    manager.request_loader(lambda request: User("alice"))

    @app.before_request
    def guard() -> Any:
        return ("no", 403) if flask.request.path == "/blocked" else None

    AuditExtension(app)

    @app.post("/blocked")
    def blocked() -> str:
        return "never"

    assert app.test_client().post("/blocked").status_code == 403
    (event,) = sink.events
    assert (event.actor.id, event.outcome) == ("alice", "failure")
    assert event.request is not None
    assert (event.request.route, event.request.status_code) == ("/blocked", 403)


# -- the extension hands values over: an audited request nothing asks about stays raw ----


def logged_in_app(name: str) -> flask.Flask:
    """A Flask app whose every request is flask-login's ``alice``, with the extension."""
    app = flask.Flask(name)
    app.secret_key = "test"
    app.config["TESTING"] = True
    manager = flask_login.LoginManager(app)

    class User(flask_login.UserMixin):
        def __init__(self, user_id: str) -> None:
            self.id = user_id

    manager.request_loader(lambda request: User("alice"))
    AuditExtension(app)
    return app


def test_an_audited_post_nothing_asks_about_is_built_on_the_worker(
    sink: MemorySink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The extension finds the user and the URL rule on the request thread and hands them over
    as values; the context itself is built on the delivery worker."""
    on_worker = building_threads(monkeypatch, wsgi, "context_from_environ")
    app = logged_in_app("raw")
    seen: list[object] = []

    @app.post("/pods/<pod_id>/start")
    def start(pod_id: str) -> str:
        return pod_id

    app.teardown_request(lambda exc: seen.append(opened()))
    assert app.test_client().post("/pods/p-1/start").status_code == 200
    (event,) = sink.events
    assert seen == [None]
    assert on_worker == [True]
    assert event.actor.id == "alice"
    assert event.request is not None
    assert (event.request.route, event.request.status_code) == ("/pods/<pod_id>/start", 200)


def test_a_view_that_asks_gets_the_request_and_the_user_lookup(sink: MemorySink) -> None:
    """A view asking for its context gets one built there, holding the Flask request and the
    extension's user lookup."""
    app = logged_in_app("asks")
    seen: list[object] = []

    @app.post("/pods/<pod_id>/restart")
    def restart(pod_id: str) -> str:
        context = current()
        assert context is not None
        seen.append((context.native_request is flask.request._get_current_object(), context.route))
        seen.append(context.actor_lookup() if context.actor_lookup is not None else None)
        record("restart", resource=Resource("pod", pod_id))
        return pod_id

    assert app.test_client().post("/pods/p-2/restart").status_code == 200
    assert seen[0] == (True, "/pods/<pod_id>/restart")
    assert isinstance(seen[1], Actor)
    assert seen[1].id == "alice"
    (event,) = sink.events
    assert (event.action.id, event.actor.id) == ("restart", "alice")


def test_a_raw_post_that_raises_keeps_its_user_and_route(sink: MemorySink) -> None:
    """An exception that propagates skips after_request: teardown hands the values over, and
    the record is a 500 failure by the user, on the view's route."""
    app = logged_in_app("raises")

    @app.post("/pods/<pod_id>/explode")
    def explode(pod_id: str) -> str:
        raise RuntimeError(pod_id)

    with pytest.raises(RuntimeError):
        app.test_client().post("/pods/p-3/explode")
    (event,) = sink.events
    assert (event.actor.id, event.outcome) == ("alice", "failure")
    assert event.request is not None
    assert (event.request.route, event.request.status_code) == ("/pods/<pod_id>/explode", 500)


def test_with_resolvers_the_extension_builds_the_context_on_the_request_thread(
    sink: MemorySink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenant resolver reads the Flask request: the context is built while it is alive."""
    on_worker = building_threads(monkeypatch, wsgi, "context_from_environ")
    configure(sink=sink, tenant_resolver=lambda request: request.headers.get("X-Tenant"))
    app = logged_in_app("resolved")

    @app.post("/pods")
    def create() -> str:
        return "made"

    assert app.test_client().post("/pods", headers={"X-Tenant": "acme"}).status_code == 200
    (event,) = sink.events
    assert on_worker == [False]
    assert (event.actor.id, event.tenant) == ("alice", Scope("acme"))
