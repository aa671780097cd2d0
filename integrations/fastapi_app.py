"""FastAPI example: a small pods API with an audit trail, authenticated by bearer tokens.

Run it (records are printed to stdout as JSON lines)::

    python -m integrations.fastapi_app
    curl -X POST 127.0.0.1:8000/pods -H 'Authorization: Bearer demo-token-alice' \\
         -H 'Content-Type: application/json' -d '{"name": "web", "image": "nginx:1.27"}'

``POST /login`` trades a username and password for a token; every other route takes
``Authorization: Bearer <token>``. The ``current_user`` dependency finds the user and
``audit_actor`` hands it to the audit trail; the tenant is the user's organization (set
in the dependency), else the ``X-Tenant-ID`` header.
"""

import os
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from audit_middleware import Actor, Resource, diff, record, set_actor, set_tenant
from audit_middleware.frameworks.fastapi import audit_actor, install
from audit_middleware.sinks import JsonLinesSink, Sink
from integrations import pods


class Credentials(BaseModel):
    """The body of ``POST /login``."""

    username: str
    password: str


class NewPod(BaseModel):
    """The body of ``POST /pods``."""

    name: str
    image: str
    cpu: int = 1


def tenant_header(scope: Any) -> str | None:
    """The X-Tenant-ID header of an ASGI scope (for requests without a user)."""
    for name, value in scope.get("headers", ()):
        if name == b"x-tenant-id":
            text: str = value.decode("latin-1")
            return text
    return None


def token_actor(user: pods.User) -> Actor:
    """Token requests are recorded with the actor kind ``api_token``."""
    return Actor(id=user.id, name=user.username, email=user.email, roles=user.roles, kind="api_token")


def create_app(sink: Sink | None = None) -> FastAPI:
    """The example app; ``sink`` receives the audit records (default: stdout)."""
    app = FastAPI(title="pods")
    install(app, sink=sink or JsonLinesSink.stdout(), rules=pods.RULES, tenant_resolver=tenant_header)
    store = pods.PodStore()
    tokens = pods.Tokens()
    bearer = HTTPBearer(auto_error=False)

    # A plain ``def``: FastAPI runs it in a worker thread; set_tenant still reaches the request.
    def current_user(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> pods.User:
        user = tokens.user(credentials.credentials) if credentials is not None else None
        if user is None:
            raise HTTPException(
                401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        set_tenant(user.org)
        return user

    CurrentUser = Annotated[pods.User, Depends(audit_actor(current_user, mapper=token_actor))]  # noqa: N806

    def own_pod(pod_id: str, user: pods.User) -> dict[str, Any]:
        pod = store.get(pod_id, user.org)
        if pod is None:
            raise HTTPException(404, "no such pod")
        return pod

    @app.post("/login")
    def login(credentials: Credentials) -> dict[str, str]:
        user = pods.check_password(credentials.username, credentials.password)
        if user is None:
            record("login_failed", details={"username": credentials.username})
            raise HTTPException(401, "wrong username or password")
        set_actor(Actor(id=user.id, name=user.username, email=user.email, roles=user.roles))
        set_tenant(user.org)
        record("login", resource=Resource("session"))
        token = tokens.issue(user)
        return {"token": token}

    @app.post("/logout", status_code=204)
    def logout(user: CurrentUser, request: Request) -> None:
        tokens.revoke(request.headers["Authorization"].partition(" ")[2].strip())
        record("logout", resource=Resource("session"))

    @app.get("/pods")
    def list_pods(user: CurrentUser) -> dict[str, Any]:
        return {"pods": store.in_org(user.org)}

    @app.post("/pods", status_code=201)
    def create_pod(body: NewPod, user: CurrentUser) -> dict[str, Any]:
        pod = store.create(user.org, body.name, body.image, body.cpu)
        record("create", resource=pods.resource(pod))
        return pod

    @app.get("/pods/{pod_id}")
    def get_pod(pod_id: str, user: CurrentUser) -> dict[str, Any]:
        return own_pod(pod_id, user)

    @app.patch("/pods/{pod_id}")
    def update_pod(pod_id: str, changes: dict[str, Any], user: CurrentUser) -> dict[str, Any]:
        result = store.update(pod_id, user.org, changes)
        if result is None:
            raise HTTPException(404, "no such pod")
        before, after = result
        record("update", resource=pods.resource(after), changes=diff(before, after))
        return after

    @app.post("/pods/{pod_id}/start")
    def start_pod(pod_id: str, user: CurrentUser) -> dict[str, Any] | None:  # audited by the route rule
        return store.set_status(own_pod(pod_id, user)["id"], user.org, "running")

    @app.post("/pods/{pod_id}/stop")
    def stop_pod(pod_id: str, user: CurrentUser) -> dict[str, Any] | None:
        return store.set_status(own_pod(pod_id, user)["id"], user.org, "stopped")

    @app.post("/pods/{pod_id}/restart")
    def restart_pod(pod_id: str, user: CurrentUser) -> StreamingResponse:
        pod = own_pod(pod_id, user)

        def progress() -> Iterator[str]:  # streamed: the record is sent when the stream ends
            yield from pods.restart_steps(pod)

        return StreamingResponse(progress(), media_type="text/plain")

    @app.delete("/pods/{pod_id}", status_code=204)
    def delete_pod(pod_id: str, user: CurrentUser) -> None:
        pod = store.delete(own_pod(pod_id, user)["id"], user.org)
        assert pod is not None
        record("delete", resource=pods.resource(pod))

    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
