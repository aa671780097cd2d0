"""The FastAPI/Starlette adapter, through the example app and Starlette's TestClient.

No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations
at run time, and those name local dependencies.
"""

import contextvars
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import pytest

fastapi = pytest.importorskip("fastapi")
pytest.importorskip("httpx")  # TestClient's transport

from fastapi import Depends, FastAPI  # noqa: E402
from fastapi.responses import StreamingResponse  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.middleware.base import BaseHTTPMiddleware  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from audit_middleware import Actor, Rule, current, set_actor  # noqa: E402
from audit_middleware.frameworks.fastapi import actor_from_user, audit_actor, install  # noqa: E402
from audit_middleware.sinks import MemorySink  # noqa: E402
from audit_middleware.testing import CapturedEvents  # noqa: E402
from integrations.fastapi_app import create_app  # noqa: E402
from tests.frameworks.support import ALICE_TOKEN, only  # noqa: E402


@pytest.fixture
def app() -> FastAPI:
    app = create_app(sink=MemorySink())

    @app.post("/pods/{pod_id}/explode")
    def explode(pod_id: str, user: Annotated[Any, Depends(audit_actor(lambda: {"sub": "u-1"}))]) -> None:
        raise RuntimeError(f"pod {pod_id} exploded")

    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def create_pod(client: TestClient) -> str:
    response = client.post("/pods", json={"name": "web", "image": "nginx:1.27"}, headers=ALICE_TOKEN)
    assert response.status_code == 201
    pod_id: str = response.json()["id"]
    return pod_id


def test_bearer_token_user_is_the_actor(client: TestClient, events: CapturedEvents) -> None:
    """The user the bearer-token dependency returns is handed over as an api_token actor."""
    create_pod(client)
    document = only(events)
    assert document["user"] == {
        "id": "u-1",
        "name": "alice",
        "email": "alice@acme.example",
        "roles": ["admin"],
    }
    assert document["audit"]["actor"]["kind"] == "api_token"
    assert document["organization"] == {"id": "acme"}  # set_tenant in a sync dependency
    assert document["event"]["action"] == "create"


def test_route_template_and_rule_action(client: TestClient, events: CapturedEvents) -> None:
    """The matched route's path template is recorded; the stop rule names action and pod."""
    pod_id = create_pod(client)
    events.clear()
    assert client.post(f"/pods/{pod_id}/stop", headers=ALICE_TOKEN).status_code == 200
    document = only(events)
    assert document["audit"]["http"]["route"] == "/pods/{pod_id}/stop"
    assert document["event"]["action"] == "stop"
    assert document["audit"]["resource"] == {"type": "pod", "id": pod_id}


def test_update_records_the_change(client: TestClient, events: CapturedEvents) -> None:
    """An update's record holds previous values, new values and the modified fields."""
    pod_id = create_pod(client)
    events.clear()
    client.patch(f"/pods/{pod_id}", json={"spec": {"image": "nginx:1.28"}}, headers=ALICE_TOKEN)
    assert only(events)["audit"]["changes"] == {
        "before": {"spec": {"image": "nginx:1.27"}},
        "after": {"spec": {"image": "nginx:1.28"}},
        "fields": ["spec.image"],
    }


def test_get_is_not_audited(client: TestClient, events: CapturedEvents) -> None:
    """Reading pods leaves no record."""
    pod_id = create_pod(client)
    events.clear()
    assert client.get("/pods", headers=ALICE_TOKEN).status_code == 200
    assert client.get(f"/pods/{pod_id}", headers=ALICE_TOKEN).status_code == 200
    assert events == []


def test_exception_is_a_500_failure_and_propagates(client: TestClient, events: CapturedEvents) -> None:
    """An endpoint's exception reaches the caller; the record says 500 failure, with actor and route."""
    with pytest.raises(RuntimeError, match="exploded"):
        client.post("/pods/p-1/explode", headers=ALICE_TOKEN)
    document = only(events)
    assert document["event"]["outcome"] == "failure"
    assert document["http"]["response"]["status_code"] == 500
    assert document["user"]["id"] == "u-1"
    assert document["audit"]["http"]["route"] == "/pods/{pod_id}/explode"


def test_unauthenticated_request_is_a_401_failure(client: TestClient, events: CapturedEvents) -> None:
    """Without a token the dependency refuses: a failure record by nobody."""
    assert client.post("/pods", json={"name": "web", "image": "nginx"}).status_code == 401
    document = only(events)
    assert document["event"]["outcome"] == "failure"
    assert document["user"] == {"name": "anonymous"}


def test_streamed_response_is_recorded_once_after_the_stream(app: FastAPI, events: CapturedEvents) -> None:
    """A streamed response is recorded once, after its last chunk, not while it streams."""
    seen_while_streaming: list[int] = []

    @app.post("/pods/{pod_id}/logs")
    def logs(
        pod_id: str, user: Annotated[Any, Depends(audit_actor(lambda: {"sub": "u-9"}))]
    ) -> StreamingResponse:
        def lines() -> Iterator[str]:
            for number in range(3):
                seen_while_streaming.append(len(events))
                yield f"line {number}\n"

        return StreamingResponse(lines(), media_type="text/plain")

    with TestClient(app) as client:
        assert client.post("/pods/p-1/logs").text == "line 0\nline 1\nline 2\n"
    assert seen_while_streaming == [0, 0, 0]
    document = only(events)
    assert document["user"] == {"id": "u-9"}
    assert document["audit"]["http"]["route"] == "/pods/{pod_id}/logs"


def test_login_and_logout(client: TestClient, events: CapturedEvents) -> None:
    """Login names the user who logged in; logout with the issued token names the same user."""
    token = client.post("/login", json={"username": "bob", "password": "builder"}).json()["token"]
    assert client.post("/logout", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    login, logout = (event.to_document() for event in events)
    assert (login["event"]["action"], login["user"]["id"], login["organization"]) == (
        "login",
        "u-2",
        {"id": "globex"},
    )
    assert (logout["event"]["action"], logout["user"]["id"]) == ("logout", "u-2")


def test_failed_login_takes_the_tenant_header(client: TestClient, events: CapturedEvents) -> None:
    """A wrong password: a login_failed failure by nobody, in the tenant the header names."""
    response = client.post(
        "/login", json={"username": "bob", "password": "x"}, headers={"X-Tenant-ID": "globex"}
    )
    assert response.status_code == 401
    document = only(events)
    assert document["event"]["action"] == "login_failed"
    assert document["user"] == {"name": "anonymous"}
    assert document["organization"] == {"id": "globex"}


# --- handing the actor over from dependencies ----------------------------------------------


def sync_user() -> dict[str, str]:
    return {"sub": "u-sync", "email": "sync@example.com"}


async def async_user() -> dict[str, str]:
    return {"sub": "u-async", "email": "async@example.com"}


def generator_user() -> Iterator[dict[str, str]]:
    yield {"sub": "u-gen"}


async def async_generator_user() -> AsyncIterator[dict[str, str]]:
    yield {"sub": "u-agen"}


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


def small_app(sink: MemorySink, dependency: Any) -> FastAPI:
    app = FastAPI()
    install(app, sink=sink)

    @app.post("/things")
    def change(user: Annotated[Any, Depends(dependency)]) -> str:
        return "ok"

    return app


@pytest.mark.parametrize(
    ("dependency", "user_id"),
    [
        pytest.param(sync_user, "u-sync", id="def"),
        pytest.param(async_user, "u-async", id="async-def"),
        pytest.param(generator_user, "u-gen", id="def-yield"),
        pytest.param(async_generator_user, "u-agen", id="async-def-yield"),
    ],
)
def test_audit_actor_works_for_sync_and_async_dependencies(
    sink: MemorySink, dependency: Any, user_id: str
) -> None:
    """audit_actor hands over the user of ``def`` (thread pool) and ``async def`` dependencies."""
    with TestClient(small_app(sink, audit_actor(dependency))) as client:
        assert client.post("/things").status_code == 200
    (event,) = sink.events
    assert event.actor.id == user_id


@pytest.mark.parametrize("is_async", [False, True], ids=["def", "async-def"])
def test_set_actor_inside_any_dependency_reaches_the_middleware(sink: MemorySink, is_async: bool) -> None:
    """set_actor changes the request's shared context object, so even a ``def`` dependency
    (run in a thread on a copy of the context) hands its actor to the middleware."""

    def sync_dependency() -> None:
        set_actor(Actor(id="from-def"))

    async def async_dependency() -> None:
        set_actor(Actor(id="from-async-def"))

    with TestClient(small_app(sink, async_dependency if is_async else sync_dependency)) as client:
        client.post("/things")
    (event,) = sink.events
    assert event.actor.id == ("from-async-def" if is_async else "from-def")


def test_a_contextvar_set_in_a_sync_dependency_is_lost(sink: MemorySink) -> None:
    """The pitfall set_actor avoids: a ContextVar *set* in a ``def`` dependency stays in its
    thread's copy of the context; the endpoint (and the middleware) never see it."""
    marker: contextvars.ContextVar[str | None] = contextvars.ContextVar("marker", default=None)
    seen: list[object] = []

    def sets_marker() -> None:
        marker.set("set in the thread pool")
        seen.append(current())

    app = small_app(sink, sets_marker)

    @app.post("/look")
    def look(_: Annotated[None, Depends(sets_marker)]) -> None:
        seen.append(marker.get())

    with TestClient(app) as client:
        client.post("/look")
    context, value = seen
    assert context is not None  # the shared RequestContext object is reachable from the thread
    assert value is None


def test_mapper_failure_costs_neither_request_nor_record(sink: MemorySink) -> None:
    """A mapper that raises is logged; the request succeeds and is recorded by nobody."""

    def broken(user: Any) -> Actor | None:
        raise LookupError("directory down")

    with TestClient(small_app(sink, audit_actor(sync_user, mapper=broken))) as client:
        assert client.post("/things").status_code == 200
    (event,) = sink.events
    assert event.actor == Actor(name="anonymous")


def test_actor_from_user_reads_objects_claims_and_actors() -> None:
    """The default mapper takes an Actor as is, token claims, or a user object."""

    class User:
        id = 3
        username = "ann"
        email = "ann@example.com"

    actor = Actor(id="a", kind="service")
    assert actor_from_user(actor) is actor
    assert actor_from_user({"sub": "s", "preferred_username": "sam", "roles": ["x"]}) == Actor(
        id="s", name="sam", roles=("x",)
    )
    assert actor_from_user(User()) == Actor(id="3", name="ann", email="ann@example.com")


# --- a plain Starlette app ----------------------------------------------------------------


def test_install_on_a_starlette_app(sink: MemorySink) -> None:
    """install() serves Starlette too: route template, route rule, and set_actor in an endpoint."""

    async def start(request: Request) -> PlainTextResponse:
        set_actor(Actor(id=request.headers["X-User"]))
        return PlainTextResponse("started")

    app = Starlette(routes=[Route("/vms/{vm_id}/start", start, methods=["POST"])])
    install(app, sink=sink, rules=[Rule("POST", "/vms/<vm_id>/start", "start", "virtual_machine", "vm_id")])
    with TestClient(app) as client:
        assert client.post("/vms/vm-7/start", headers={"X-User": "u-5"}).status_code == 200
        assert client.get("/vms/vm-7/start").status_code == 405
    (event,) = sink.events
    document = event.to_document()
    assert document["audit"]["http"]["route"] == "/vms/{vm_id}/start"
    assert document["event"]["action"] == "start"
    assert document["audit"]["resource"] == {"type": "virtual_machine", "id": "vm-7"}
    assert document["user"] == {"id": "u-5"}


def test_actor_survives_a_base_http_middleware_inside(sink: MemorySink) -> None:
    """An app's BaseHTTPMiddleware runs the endpoint in another task (a copied context);
    the actor handed over there still reaches the audit middleware."""

    async def passthrough(request: Request, call_next: Any) -> Any:
        return await call_next(request)

    app = FastAPI()
    app.add_middleware(BaseHTTPMiddleware, dispatch=passthrough)  # added first: inside the audit one
    install(app, sink=sink)

    @app.post("/things")
    def change(user: Annotated[Any, Depends(audit_actor(sync_user))]) -> str:
        return "ok"

    with TestClient(app) as client:
        client.post("/things")
    (event,) = sink.events
    assert event.actor.id == "u-sync"
