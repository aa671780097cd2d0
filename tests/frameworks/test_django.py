"""The Django adapter, through the example app and Django's test clients.

``Client`` drives the middleware in its sync mode (as under WSGI) and ``AsyncClient``
in its async mode (as under ASGI); most behaviours are checked in both.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

django = pytest.importorskip("django")

from asgiref.sync import iscoroutinefunction, sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse, StreamingHttpResponse  # noqa: E402
from django.test import AsyncClient, Client, RequestFactory, override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from werkzeug.test import Client as WSGIClient  # noqa: E402

from audit_middleware import Actor, Resource, configure, record  # noqa: E402
from audit_middleware import AuditMiddleware as WSGIAuditMiddleware  # noqa: E402
from audit_middleware.capture.changes import REGISTRY, Tracking  # noqa: E402
from audit_middleware.capture.context import opened  # noqa: E402
from audit_middleware.config import get_config  # noqa: E402
from audit_middleware.frameworks.django import AuditMiddleware  # noqa: E402
from audit_middleware.frameworks.django.conf import apply_settings  # noqa: E402
from audit_middleware.sinks import MemorySink  # noqa: E402
from audit_middleware.testing import CapturedEvents  # noqa: E402
from tests.frameworks.support import ALICE_TOKEN, only  # noqa: E402


@pytest.fixture
def app(django_project: dict[type, Tracking]) -> None:
    """Auditing configured from ``settings.AUDIT_MIDDLEWARE``, as at the project's start-up,
    with the example's models registered."""

    assert apply_settings() is not None
    REGISTRY.restore(django_project)


# The example's URLs plus views that fail, for ROOT_URLCONF=__name__.
def explode(request: Any, pod_id: str) -> HttpResponse:
    record("restart")
    raise RuntimeError(f"pod {pod_id} exploded")


def broken_stream(request: Any) -> StreamingHttpResponse:
    def lines() -> Iterator[bytes]:
        yield b"one\n"
        raise OSError("disk gone")

    return StreamingHttpResponse(lines())


def async_stream(request: Any) -> StreamingHttpResponse:
    async def lines() -> AsyncIterator[bytes]:
        yield b"one\n"
        if request.GET.get("fail"):
            raise OSError("disk gone")
        yield b"two\n"

    return StreamingHttpResponse(lines())


def ping(request: Any) -> HttpResponse:
    return HttpResponse("pong")


def peek(request: Any) -> HttpResponse:
    """Whether this request's audit context has been built by the time the view runs."""
    return HttpResponse("built" if opened() is not None else "not built")


def noted(request: Any, pod_id: str) -> HttpResponse:
    """A GET that records an action of its own."""
    record("restart", resource=Resource("pod", pod_id))
    return HttpResponse("noted")


def _urlpatterns() -> list[Any]:
    from integrations.django_app.urls import urlpatterns  # noqa: PLC0415 - needs the app registry

    return [
        *urlpatterns,
        path("pods/<str:pod_id>/explode", explode),
        path("broken-stream", broken_stream),
        path("async-stream", async_stream),
        path("ping", ping),
        path("peek", peek),
        path("pods/<str:pod_id>/noted", noted),
    ]


def __getattr__(name: str) -> Any:
    # Django reads urlpatterns when it first resolves a URL, after the project is set up.
    if name == "urlpatterns":
        return _urlpatterns()
    raise AttributeError(name)


with_test_urls = override_settings(ROOT_URLCONF=__name__)


class Caller:
    """One interface over Client and AsyncClient, so a test body runs in both modes."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._client: Client | AsyncClient = Client() if mode == "wsgi" else AsyncClient()

    async def __call__(self, method: str, url: str, body: Any = None, **headers: str) -> Any:
        kwargs: dict[str, Any] = {"headers": headers}
        if isinstance(body, dict) and method != "post_form":
            kwargs.update(data=json.dumps(body), content_type="application/json")
        elif body is not None:
            kwargs["data"] = body
        verb = getattr(self._client, "post" if method == "post_form" else method)
        if self.mode == "asgi":
            return await verb(url, **kwargs)
        # Off the event loop, in a thread, as a WSGI server would run it.
        return await sync_to_async(verb)(url, **kwargs)

    async def login(self, username: str, password: str) -> None:
        response = await self("post_form", "/login", {"username": username, "password": password})
        assert response.status_code == 200


@pytest.fixture(params=["wsgi", "asgi"])
def call(request: pytest.FixtureRequest, app: None) -> Caller:
    return Caller(request.param)


async def create_pod(call: Caller, **headers: str) -> str:
    response = await call("post", "/pods", {"name": "web", "image": "nginx:1.27"}, **headers)
    assert response.status_code == 201, response.content
    pod_id: str = response.json()["id"]
    return pod_id


async def test_session_user_is_the_actor(call: Caller, events: CapturedEvents) -> None:
    """After a session login, request.user is the record's actor, with its org as tenant."""
    await call.login("bob", "builder")
    await create_pod(call)
    login, create = (event.to_document() for event in events)
    assert login["event"]["action"] == "login"
    assert create["event"]["action"] == "create"
    for document in (login, create):
        assert document["user"]["name"] == "bob"
        assert document["user"]["email"] == "bob@globex.example"
        assert document["organization"] == {"id": "globex"}


async def test_bearer_token_user_is_the_actor(call: Caller, events: CapturedEvents) -> None:
    """A view that authenticates by bearer token sets request.user; the record names that user."""
    await create_pod(call, **ALICE_TOKEN)
    document = only(events)
    assert document["user"]["name"] == "alice"
    assert document["organization"] == {"id": "acme"}
    assert document["audit"]["resource"]["type"] == "pod"


async def test_route_template_and_rule_action(call: Caller, events: CapturedEvents) -> None:
    """The URL pattern is recorded as the route; the start rule names action and pod, and the
    pod's saved change (status) enriches it, with the pod's name."""
    pod_id = await create_pod(call, **ALICE_TOKEN)
    events.clear()
    assert (await call("post", f"/pods/{pod_id}/start", **ALICE_TOKEN)).status_code == 200
    document = only(events)
    assert document["audit"]["http"]["route"] == "/pods/<str:pod_id>/start"
    assert document["event"]["action"] == "start"
    assert document["audit"]["resource"] == {"type": "pod", "id": pod_id, "name": "web"}
    assert document["audit"]["changes"] == {
        "before": {"status": "stopped"},
        "after": {"status": "running"},
        "fields": ["status"],
    }


async def test_update_records_the_change(call: Caller, events: CapturedEvents) -> None:
    """An update's record holds previous values, new values and the modified fields."""
    pod_id = await create_pod(call, **ALICE_TOKEN)
    events.clear()
    await call("patch", f"/pods/{pod_id}", {"spec": {"cpu": 4}}, **ALICE_TOKEN)
    assert only(events)["audit"]["changes"] == {
        "before": {"spec": {"cpu": 1}},
        "after": {"spec": {"cpu": 4}},
        "fields": ["spec.cpu"],
    }


async def test_get_is_not_audited(call: Caller, events: CapturedEvents) -> None:
    """Reading pods leaves no record."""
    pod_id = await create_pod(call, **ALICE_TOKEN)
    events.clear()
    assert (await call("get", "/pods", **ALICE_TOKEN)).status_code == 200
    assert (await call("get", f"/pods/{pod_id}", **ALICE_TOKEN)).status_code == 200
    assert events == []


@with_test_urls
async def test_unaudited_request_leaves_the_user_unloaded(call: Caller, events: CapturedEvents) -> None:
    """A GET the app answers without the user does not load it: no session read, no Vary: Cookie."""
    await call.login("bob", "builder")
    events.clear()
    response = await call("get", "/ping")
    assert response.content == b"pong"
    assert "Vary" not in response
    assert events == []


@with_test_urls
async def test_an_unaudited_request_builds_no_context(call: Caller, events: CapturedEvents) -> None:
    """A GET nothing records in gets no audit context at all; a POST gets one at once."""
    assert (await call("get", "/peek", **ALICE_TOKEN)).content == b"not built"
    assert (await call("post", "/peek", **ALICE_TOKEN)).content == b"built"
    assert [event.action.id for event in events] == ["create"]


@with_test_urls
async def test_a_record_in_a_get_has_its_request(call: Caller, events: CapturedEvents) -> None:
    """The context a record() builds in a GET still gets the route, the status and the actor."""
    await call.login("bob", "builder")
    events.clear()
    assert (await call("get", "/pods/p-7/noted")).status_code == 200
    document = only(events)
    assert document["event"]["action"] == "restart"
    assert document["audit"]["http"]["route"] == "/pods/<str:pod_id>/noted"
    assert document["http"]["response"]["status_code"] == 200
    assert document["http"]["request"]["method"] == "GET"
    assert document["user"]["name"] == "bob"
    assert document["organization"] == {"id": "globex"}


@with_test_urls
async def test_exception_is_a_500_failure_and_propagates(call: Caller, events: CapturedEvents) -> None:
    """A view's exception reaches the caller; the record (the view's own) says 500 failure."""
    with pytest.raises(RuntimeError, match="exploded"):
        await call("post", "/pods/p-1/explode", **ALICE_TOKEN)
    document = only(events)
    assert document["event"]["action"] == "restart"
    assert document["event"]["outcome"] == "failure"
    assert document["http"]["response"]["status_code"] == 500
    assert document["audit"]["http"]["route"] == "/pods/<str:pod_id>/explode"


@with_test_urls
@override_settings(DEBUG_PROPAGATE_EXCEPTIONS=True)
async def test_exception_through_the_middleware_is_recorded_and_reraised(
    call: Caller, events: CapturedEvents
) -> None:
    """When Django lets the exception through the middleware chain, the middleware records
    it as a 500 failure and re-raises it untouched."""
    await call.login("alice", "wonderland")
    events.clear()
    with pytest.raises(RuntimeError, match="exploded"):
        await call("post", "/pods/p-2/explode")
    document = only(events)
    assert document["event"]["outcome"] == "failure"
    assert document["http"]["response"]["status_code"] == 500
    assert document["user"]["name"] == "alice"


async def test_streamed_response_is_recorded_once_when_closed(call: Caller, events: CapturedEvents) -> None:
    """A streamed restart is recorded once, when the response is closed after streaming."""
    pod_id = await create_pod(call, **ALICE_TOKEN)
    events.clear()
    response = await call("post", f"/pods/{pod_id}/restart", **ALICE_TOKEN)
    assert response.streaming
    assert events == []  # not before the stream is consumed and closed
    assert b"".join(response.streaming_content).endswith(b"running\n")
    document = only(events)
    assert document["event"]["action"] == "restart"
    assert document["user"]["name"] == "alice"


@with_test_urls
def test_stream_that_fails_is_a_failure(app: None, events: CapturedEvents) -> None:
    """A streaming generator that raises mid-stream leaves one failure record."""
    response = Client().post("/broken-stream")
    with pytest.raises(OSError, match="disk gone"):
        b"".join(response.streaming_content)
    document = only(events)
    assert document["event"]["outcome"] == "failure"
    assert document["http"]["response"]["status_code"] == 500


@with_test_urls
async def test_async_stream_is_recorded_when_closed(app: None, events: CapturedEvents) -> None:
    """An async iterator's stream (ASGI) is recorded once, after it is consumed and closed.

    It changed no registered model, and ORM capture is on: its outcome is unknown, not success."""
    response = await AsyncClient().post("/async-stream")
    assert events == []
    assert [chunk async for chunk in response.streaming_content] == [b"one\n", b"two\n"]
    document = only(events)
    assert document["event"]["outcome"] == "unknown"
    assert document["audit"]["http"]["route"] == "/async-stream"


@with_test_urls
async def test_async_stream_that_fails_is_a_failure(app: None, events: CapturedEvents) -> None:
    """An async iterator that raises mid-stream leaves one failure record."""
    response = await AsyncClient().post("/async-stream?fail=1")
    with pytest.raises(OSError, match="disk gone"):
        _ = [chunk async for chunk in response.streaming_content]
    document = only(events)
    assert document["event"]["outcome"] == "failure"
    assert document["http"]["response"]["status_code"] == 500


def test_stream_never_iterated_is_recorded_on_close(app: None, events: CapturedEvents) -> None:
    """close() without iteration (a client gone before the first chunk) still sends the record."""

    request = _request("POST", "/pods/p-1/restart")
    response = AuditMiddleware(lambda _: StreamingHttpResponse(iter([b"x"])))(request)
    assert events == []
    response.close()
    response.close()
    assert only(events)["url"]["path"] == "/pods/p-1/restart"


async def test_logout_records_who_logged_out(call: Caller, events: CapturedEvents) -> None:
    """logout() replaces request.user, yet the logout record names the user."""
    await call.login("alice", "wonderland")
    events.clear()
    assert (await call("post", "/logout")).status_code == 204
    document = only(events)
    assert document["event"]["action"] == "logout"
    assert document["user"]["name"] == "alice"
    assert document["organization"] == {"id": "acme"}


async def test_failed_login_takes_the_tenant_header(call: Caller, events: CapturedEvents) -> None:
    """A wrong password: a login_failed failure (from Django's signal) naming the attempted
    user, never the password, in the tenant the header names."""
    response = await call(
        "post_form", "/login", {"username": "bob", "password": "x-wrong"}, **{"X-Tenant-ID": "globex"}
    )
    assert response.status_code == 401
    document = only(events)
    assert document["event"]["action"] == "login_failed"
    assert document["event"]["outcome"] == "failure"
    assert document["user"] == {"name": "bob"}
    assert document["audit"]["details"] == {"username": "bob"}
    assert "x-wrong" not in json.dumps(document)
    assert document["organization"] == {"id": "globex"}


# --- modes, settings and composition ------------------------------------------------------


def _request(method: str, url: str) -> Any:

    return getattr(RequestFactory(), method.lower())(url)


def test_middleware_is_async_when_the_chain_is(app: None) -> None:
    """Given an async get_response the middleware is itself a coroutine function (for ASGI)."""

    async def async_view(request: Any) -> HttpResponse:
        return HttpResponse()

    assert iscoroutinefunction(AuditMiddleware(async_view))
    assert not iscoroutinefunction(AuditMiddleware(lambda request: HttpResponse()))


def test_outer_wsgi_middleware_owns_the_request(app: None, events: CapturedEvents) -> None:
    """Wrapped in the WSGI AuditMiddleware too, a request still makes exactly one record,
    with Django's route and user."""

    client = WSGIClient(WSGIAuditMiddleware(get_wsgi_application()))
    response = client.post(
        "/pods", json={"name": "web", "image": "nginx"}, headers=ALICE_TOKEN, buffered=True
    )
    assert response.status_code == 201
    document = only(events)
    assert document["user"]["name"] == "alice"
    assert document["audit"]["http"]["route"] == "/pods"


def test_user_mapper_setting(django_project: object) -> None:
    """AUDIT_MIDDLEWARE["user_mapper"] (a dotted path) maps the user."""
    sink = MemorySink()
    options = {"sink": sink, "user_mapper": "tests.frameworks.test_django.mapper_for_test"}
    with override_settings(AUDIT_MIDDLEWARE=options):
        Client().post(
            "/pods", {"name": "web", "image": "x"}, content_type="application/json", headers=ALICE_TOKEN
        )
    (event,) = sink.events
    assert event.actor == Actor(id="mapped-alice", kind="service")


def mapper_for_test(user: Any) -> Actor:
    return Actor(id=f"mapped-{user.get_username()}", kind="service")


def test_unknown_setting_is_improperly_configured(django_project: object) -> None:
    """A key configure() does not take is reported with the setting's name."""
    with (
        pytest.raises(ImproperlyConfigured, match=r"AUDIT_MIDDLEWARE.*retention"),
        override_settings(AUDIT_MIDDLEWARE={"retention": 90}),
    ):
        pass


def test_settings_need_the_app_installed(django_project: object) -> None:
    """Core options without the app in INSTALLED_APPS are an error, not silently ignored."""

    apps_without = [app for app in settings.INSTALLED_APPS if app != "audit_middleware.frameworks.django"]
    with (
        override_settings(
            INSTALLED_APPS=apps_without, AUDIT_MIDDLEWARE={"service_name": "pods", "sink": MemorySink()}
        ),
        pytest.raises(ImproperlyConfigured, match="INSTALLED_APPS"),
    ):
        AuditMiddleware(lambda request: HttpResponse())


def test_without_the_setting_configure_is_left_alone(django_project: object) -> None:
    """No AUDIT_MIDDLEWARE: the app's own configure() call (and its sink) stays in force."""

    sink = MemorySink()
    configure(sink=sink)
    with override_settings(AUDIT_MIDDLEWARE=None):
        assert apply_settings() is None
        Client().post(
            "/pods", {"name": "web", "image": "x"}, content_type="application/json", headers=ALICE_TOKEN
        )
    assert len(sink.events) == 1


def test_example_settings_load_dotted_paths(app: None) -> None:
    """The example's dotted tenant resolver was imported."""
    from integrations.django_app.views import tenant_of  # noqa: PLC0415 - needs the app registry

    assert get_config().tenant_resolver is tenant_of


def test_sink_setting_may_name_a_class(django_project: object) -> None:
    """A dotted sink naming a class is instantiated."""

    with override_settings(AUDIT_MIDDLEWARE={"sink": "audit_middleware.sinks.MemorySink"}):
        config = apply_settings()
    assert config is not None
    assert isinstance(config.sink, MemorySink)
