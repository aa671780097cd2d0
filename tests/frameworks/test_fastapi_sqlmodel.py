"""The FastAPI + SQLModel example app: machines changed through its API, checked in the stored trail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlmodel")
pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from audit_middleware.capture.changes import REGISTRY
from integrations import fastapi_sqlmodel_app as example
from tests.frameworks.support import StoredTrail

# the registration the example made at import (each test starts with none)
OPTIONS = REGISTRY.tracking_for(example.VirtualMachine)


class Trail(StoredTrail):
    """The example app writing into a SQLite store, with a logged-in client."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        assert OPTIONS is not None
        REGISTRY.add(example.VirtualMachine, OPTIONS)
        self.client = TestClient(example.create_app(sink=self.sink))
        token = self.client.post("/token", data={"username": "alice", "password": "wonderland"})
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def call(self, method: str, url: str, **kwargs: Any) -> Any:
        return self.client.request(method, url, headers=self.headers, **kwargs)

    def new_machine(self, name: str, **body: Any) -> int:
        response = self.call("POST", "/vms/", json={"name": name, **body})
        assert response.status_code == 201, response.text
        machine_id: int = response.json()["id"]
        return machine_id

    def machines(self) -> list[Any]:
        return [e for e in self.stored("acme") if e.resource and e.resource.type == "virtual_machine"]


@pytest.fixture
def trail(tmp_path: Path) -> Iterator[Trail]:
    with Trail(tmp_path / "audit.sqlite3") as trail:
        yield trail


def test_create_resize_delete_are_recorded_with_their_rows(trail: Trail) -> None:
    """Each endpoint's change is one record naming the machine, by the token's user, in its tenant."""
    machine = trail.new_machine("db-1", size="large", root_password="hunter2-root")
    trail.call("PATCH", f"/vms/{machine}", json={"cpus": 8, "name": "db-primary"})
    trail.call("DELETE", f"/vms/{machine}")
    create, resize, delete = trail.machines()
    assert [e.action.id for e in (create, resize, delete)] == ["create", "update", "delete"]
    assert create.resource is not None
    assert (create.resource.id, create.resource.name) == (str(machine), "db-1")
    assert resize.changes is not None
    assert (resize.changes.before, resize.changes.after) == (
        {"cpus": 1, "name": "db-1"},
        {"cpus": 8, "name": "db-primary"},
    )
    assert resize.changes.fields == ("cpus", "name")
    assert delete.changes is not None
    assert delete.changes.before["cpus"] == 8
    assert {e.actor.name for e in (create, resize, delete)} == {"alice"}
    assert "hunter2-root" not in repr([e.to_document() for e in trail.stored("acme")])


def test_bulk_stop_and_purge_are_one_record_each(trail: Trail) -> None:
    """update()/delete() over several machines: one record each, every machine a target."""
    ids = [trail.new_machine(name) for name in ("a", "b")]
    assert trail.call("POST", "/vms/stop").json() == {"stopped": 2}
    assert trail.call("DELETE", "/vms/").json() == {"deleted": 2}
    stop, purge = trail.machines()[-2:]
    assert stop.action.id == "update"
    assert [t.id for t in stop.targets] == [str(i) for i in ids]
    assert stop.changes is not None
    assert stop.changes.after == {f"virtual_machine:{i}": {"status": "stopped"} for i in ids}
    assert purge.action.id == "delete"
    assert purge.details["count"] == 2


def test_rolled_back_resize_is_not_recorded_as_done(trail: Trail) -> None:
    """A resize over quota is flushed, rolled back and refused: the record has no change."""
    machine = trail.new_machine("small-one")
    assert trail.call("PATCH", f"/vms/{machine}", json={"cpus": 64}).status_code == 409
    refused = trail.stored("acme")[-1]
    assert refused.outcome == "failure"
    assert refused.changes is None
    assert trail.call("GET", "/vms/").json()[0]["cpus"] == 1


def test_validation_error_changes_nothing_and_is_a_failure(trail: Trail) -> None:
    """A body FastAPI rejects (422) leaves a failure record and no change."""
    assert trail.call("POST", "/vms/", json={"name": ""}).status_code == 422
    refused = trail.stored("acme")[-1]
    assert refused.outcome == "failure"
    assert refused.changes is None


def test_oauth2_token_login_names_the_user(trail: Trail) -> None:
    """POST /token (a form, no dependency) is one Login naming the user, in their tenant."""
    (login,) = [e for e in trail.stored("acme") if e.action.id == "login"]
    assert (login.actor.name, login.actor.email, login.outcome) == ("alice", "alice@acme.example", "success")
    assert login.request is not None
    assert login.request.path == "/token"


def test_failed_token_login_is_login_failed_with_the_attempted_user(trail: Trail) -> None:
    """A wrong password (400): one Login Failed by the attempted name, no generic record."""
    response = trail.client.post("/token", data={"username": "bob", "password": "guess"})
    assert response.status_code == 400
    token_records = [e for e in trail.stored() if e.request and e.request.path == "/token"]
    assert [(e.action.id, e.actor.name, e.outcome) for e in token_records] == [
        ("login_failed", "bob", "failure")
    ]
    assert "guess" not in repr(token_records[0].to_document())


def test_redirect_adding_the_slash_is_not_recorded(trail: Trail) -> None:
    """POST /vms is redirected (307) to /vms/ and repeated: one record, of the repeated request."""
    response = trail.call("POST", "/vms", json={"name": "slashless"})
    assert response.status_code == 201
    assert [e.request.path for e in trail.machines() if e.request] == ["/vms/"]
    assert not [e for e in trail.stored() if e.request and e.request.path == "/vms"]


def test_request_without_a_token_is_refused_not_a_success(trail: Trail) -> None:
    """A change attempted without a valid token (401) is a failure that changed nothing."""
    response = trail.client.post("/vms/", json={"name": "intruder"})
    assert response.status_code == 401
    refused = trail.stored()[-1]
    assert (refused.outcome, refused.changes, refused.actor.name) == ("failure", None, "anonymous")
