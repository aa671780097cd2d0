"""FastAPI + SQLModel example: an organization's virtual machines in SQLite, audited from the ORM.

Run it (records are printed to stdout as JSON lines; the database is in memory)::

    python -m integrations.fastapi_sqlmodel_app
    curl -s 127.0.0.1:8001/token -d username=alice -d password=wonderland     # {"access_token": ...}
    curl -X POST 127.0.0.1:8001/vms/ -H "Authorization: Bearer $TOKEN" \\
         -H 'Content-Type: application/json' -d '{"name": "db-1", "size": "large"}'

The audit set-up is two lines beside the app's own: ``install(app)`` and
``register(VirtualMachine, ...)``. The endpoints record nothing themselves: creating,
resizing, deleting, stopping in bulk and purging machines is recorded from the ORM,
with the machine as resource and its previous and new values; a resize over the quota
is rolled back and not recorded as done. The OAuth2 token endpoint names who logged in
(and who failed to) with ``audit_login`` / ``audit_login_failed``; the redirect that adds
a missing slash (``POST /vms`` -> 307 ``/vms/``) is not recorded, the repeated request is.
"""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations, which
# name aliases local to create_app.
import os
import secrets
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from sqlalchemy import Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import Field, Session, SQLModel, col, create_engine, delete, select, update

from audit_middleware import set_tenant
from audit_middleware.frameworks.fastapi import audit_actor, audit_login, audit_login_failed, install
from audit_middleware.frameworks.sqlalchemy import register
from audit_middleware.sinks import JsonLinesSink, Sink
from integrations import pods

CPU_QUOTA = {"small": 2, "medium": 8, "large": 32}


class VirtualMachine(SQLModel, table=True):
    """A virtual machine of an organization; ``root_password`` is never read by the audit trail."""

    __tablename__ = "virtual_machine"

    id: int | None = Field(default=None, primary_key=True)
    org: str
    name: str
    size: str = "small"
    cpus: int = 1
    status: str = "running"
    root_password: str = ""


class NewMachine(SQLModel):
    """The body of ``POST /vms/``."""

    name: str = Field(min_length=1, max_length=64)
    size: str = "small"
    root_password: str = ""


class Resize(SQLModel):
    """The body of ``PATCH /vms/{vm_id}``."""

    name: str | None = None
    size: str | None = None
    cpus: int | None = None


# The ORM half of the audit set-up: what is audited, and what never leaves the process.
register(VirtualMachine, exclude=["root_password"])


class QuotaExceededError(Exception):
    """More CPUs than the machine's size allows."""


def create_app(engine: Engine | None = None, sink: Sink | None = None) -> FastAPI:  # noqa: PLR0915 - one endpoint per action
    """The example app on ``engine`` (default: a fresh in-memory database); ``sink`` receives the records."""
    engine = engine or create_engine(
        "sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool
    )
    SQLModel.metadata.create_all(engine)
    app = FastAPI(title="vms")
    install(app, sink=sink or JsonLinesSink.stdout())  # the request half of the audit set-up
    tokens = pods.Tokens()
    bearer = OAuth2PasswordBearer(tokenUrl="token")

    def database() -> Iterator[Session]:
        with Session(engine) as session:
            yield session

    def current_user(token: Annotated[str, Depends(bearer)]) -> pods.User:
        user = tokens.user(token)
        if user is None:
            raise HTTPException(
                401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        set_tenant(user.org)
        return user

    DB = Annotated[Session, Depends(database)]  # noqa: N806
    CurrentUser = Annotated[pods.User, Depends(audit_actor(current_user))]  # noqa: N806

    def own(db: Session, vm_id: int, user: pods.User) -> VirtualMachine:
        vm = db.get(VirtualMachine, vm_id)
        if vm is None or vm.org != user.org:
            raise HTTPException(404, "no such machine")
        return vm

    @app.post("/token")
    def token(form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> dict[str, str]:
        user = pods.check_password(form.username, form.password)
        if user is None:
            audit_login_failed(form.username, reason="bad credentials")
            raise HTTPException(400, "incorrect username or password")
        audit_login(user)
        set_tenant(user.org)
        return {"access_token": tokens.issue(user), "token_type": "bearer"}

    @app.get("/vms/")
    def list_machines(db: DB, user: CurrentUser) -> list[dict[str, Any]]:
        found = db.exec(select(VirtualMachine).where(VirtualMachine.org == user.org))
        return [vm.model_dump(exclude={"root_password"}) for vm in found]

    @app.post("/vms/", status_code=201)
    def create_machine(body: NewMachine, db: DB, user: CurrentUser) -> dict[str, Any]:
        vm = VirtualMachine(
            org=user.org,
            name=body.name,
            size=body.size,
            root_password=body.root_password or secrets.token_urlsafe(12),
        )
        db.add(vm)
        db.commit()
        db.refresh(vm)
        return vm.model_dump(exclude={"root_password"})

    @app.patch("/vms/{vm_id}")
    def resize_machine(vm_id: int, body: Resize, db: DB, user: CurrentUser) -> dict[str, Any]:
        vm = own(db, vm_id, user)
        for name, value in body.model_dump(exclude_none=True).items():
            setattr(vm, name, value)
        db.flush()  # written, not yet committed
        if vm.cpus > CPU_QUOTA.get(vm.size, 0):
            db.rollback()  # refused: undone, and never recorded as done
            raise HTTPException(409, f"a {vm.size} machine has at most {CPU_QUOTA.get(vm.size, 0)} CPUs")
        db.commit()
        db.refresh(vm)
        return vm.model_dump(exclude={"root_password"})

    @app.delete("/vms/{vm_id}", status_code=204)
    def delete_machine(vm_id: int, db: DB, user: CurrentUser) -> None:
        db.delete(own(db, vm_id, user))
        db.commit()

    @app.post("/vms/stop")
    def stop_machines(db: DB, user: CurrentUser, size: str | None = None) -> dict[str, int]:
        statement = update(VirtualMachine).where(col(VirtualMachine.org) == user.org)
        if size is not None:
            statement = statement.where(col(VirtualMachine.size) == size)
        result = db.exec(statement.values(status="stopped"))
        db.commit()
        return {"stopped": result.rowcount}

    @app.delete("/vms/")
    def purge_machines(db: DB, user: CurrentUser) -> dict[str, int]:
        result = db.exec(
            delete(VirtualMachine).where(
                col(VirtualMachine.org) == user.org, col(VirtualMachine.status) == "stopped"
            )
        )
        db.commit()
        return {"deleted": result.rowcount}

    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8001")))
