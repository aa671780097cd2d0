"""The Flask-SQLAlchemy example app: projects changed through its views, checked in the stored trail.

Records go to an embedded SQLite store and are read back from it, as a user of the
trail would read them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flask_sqlalchemy")

from flask.testing import FlaskClient
from sqlalchemy import select

from audit_middleware.capture.changes import REGISTRY
from integrations import flask_sqlalchemy_app as example
from tests.frameworks.support import StoredTrail


class Trail(StoredTrail):
    """The example app writing into a SQLite store."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        REGISTRY.add(example.Project, REGISTRY_OPTIONS[example.Project])
        REGISTRY.add(example.User, REGISTRY_OPTIONS[example.User])
        self.app = example.create_app(sink=self.sink)
        self.client: FlaskClient = self.app.test_client()

    def login(self, username: str = "alice", password: str = "wonderland") -> Any:
        return self.client.post("/login", data={"username": username, "password": password})

    def new_project(self, name: str, **form: str) -> int:
        assert self.client.post("/projects/", data={"name": name, **form}).status_code == 302
        with self.app.app_context():
            found = example.db.session.scalar(select(example.Project.id).where(example.Project.name == name))
        assert found is not None
        return int(found)


# the registrations the example made at import (each test starts with none)
REGISTRY_OPTIONS = {model: REGISTRY.tracking_for(model) for model in (example.Project, example.User)}


@pytest.fixture
def trail(tmp_path: Path) -> Iterator[Trail]:
    with Trail(tmp_path / "audit.sqlite3") as trail:
        yield trail


def test_seeding_outside_a_request_is_recorded_by_the_system(trail: Trail) -> None:
    """The demo users added at start-up are creates by the system actor, password hashes masked."""
    seeded = [e for e in trail.stored() if e.resource and e.resource.type == "user"]
    assert {e.resource.name for e in seeded if e.resource} == {"alice", "bob", "dave", "erin"}
    assert all(e.actor.kind == "system" and e.action.id == "create" for e in seeded)
    assert all(e.changes and e.changes.after["password_hash"] == "[REDACTED]" for e in seeded)


def test_create_edit_delete_are_recorded_with_their_rows(trail: Trail) -> None:
    """Each view's change is one record naming the project; updates carry before/after values."""
    trail.login()
    project_id = trail.new_project("apollo", description="moon", deploy_key="ssh-ed25519 AAAA")
    trail.client.post(f"/projects/{project_id}/edit", data={"name": "artemis"})
    trail.client.post(f"/projects/{project_id}/delete")
    create, update, delete = (e for e in trail.stored("acme") if e.resource and e.resource.type == "project")
    assert (create.action.id, update.action.id, delete.action.id) == ("create", "update", "delete")
    assert create.resource is not None
    assert (create.resource.id, create.resource.name) == (str(project_id), "apollo")
    assert create.changes is not None
    assert create.changes.after == {
        "id": project_id,
        "org": "acme",
        "name": "apollo",
        "description": "moon",
        "archived": False,
    }
    assert update.changes is not None
    assert (update.changes.before, update.changes.after, update.changes.fields) == (
        {"name": "apollo"},
        {"name": "artemis"},
        ("name",),
    )
    assert delete.changes is not None
    assert delete.changes.before["name"] == "artemis"
    assert all(e.actor.name == "alice" for e in (create, update, delete))
    assert "ssh-ed25519" not in repr([e.to_document() for e in trail.stored("acme")])


def test_bulk_archive_and_purge_are_one_record_each(trail: Trail) -> None:
    """update()/delete() statements over several projects: one record each, every project a target."""
    trail.login()
    ids = [trail.new_project(name) for name in ("a", "b", "c")]
    trail.client.post("/projects/archive", data={"id": [str(i) for i in ids[:2]]})
    trail.client.post("/projects/purge")
    archive, purge = trail.stored("acme")[-2:]
    assert archive.action.id == "update"
    assert [t.id for t in archive.targets] == [str(i) for i in ids[:2]]
    assert archive.details["count"] == 2
    assert archive.changes is not None
    assert archive.changes.after == {
        f"project:{ids[0]}": {"archived": True},
        f"project:{ids[1]}": {"archived": True},
    }
    assert purge.action.id == "delete"
    assert sorted(t.name for t in purge.targets if t.name) == ["a", "b"]


def test_rolled_back_transfer_is_not_recorded_as_done(trail: Trail) -> None:
    """A change flushed and then rolled back leaves only the refused request's record, no change."""
    trail.login()
    project_id = trail.new_project("keep")
    response = trail.client.post(f"/projects/{project_id}/transfer", data={"org": "nowhere"})
    assert response.status_code == 409
    refused = trail.stored("acme")[-1]
    assert refused.outcome == "failure"
    assert refused.changes is None
    assert refused.request is not None
    assert refused.request.path == f"/projects/{project_id}/transfer"


def test_many_app_instances_record_each_change_once(trail: Trail, tmp_path: Path) -> None:
    """A second app in the same process (tests, factories) does not duplicate records."""
    other = example.create_app(sink=trail.sink)
    assert other is not trail.app
    trail.login()
    trail.new_project("once")
    assert [e.action.id for e in trail.stored("acme") if e.resource and e.resource.name == "once"] == [
        "create"
    ]


def test_form_login_and_failed_login(trail: Trail) -> None:
    """A form login is one Login by the user; a wrong password one Login Failed naming who was tried."""
    assert trail.login("alice", "not-it").status_code == 200  # the form again
    assert trail.login().status_code == 302
    failed = trail.stored()[-1]  # no tenant: nobody was authenticated
    assert (failed.action.id, failed.outcome, failed.actor.name) == ("login_failed", "failure", "alice")
    assert failed.details == {"username": "alice", "reason": "bad password"}
    (login,) = [e for e in trail.stored("acme") if e.action.id == "login"]
    assert (login.actor.name, login.outcome) == ("alice", "success")
    assert all(e.action.id != "create" for e in trail.stored() if e.request and e.request.path == "/login")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_logout_by_link_or_form(trail: Trail, method: str) -> None:
    """GET and POST logouts are both one Logout naming who it was."""
    trail.login()
    trail.client.open("/logout", method=method)
    logout = trail.stored("acme")[-1]
    assert (logout.action.id, logout.actor.name) == ("logout", "alice")


def test_anonymous_change_redirected_to_login_is_refused(trail: Trail) -> None:
    """POST /projects/ without a session: 302 to the login page, a failure, nothing created."""
    response = trail.client.post("/projects/", data={"name": "sneaky"})
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    refused = trail.stored()[-1]
    assert (refused.outcome, refused.details) == ("failure", {"reason": "login required"})
    assert refused.changes is None


def test_form_with_errors_is_not_claimed_as_a_success(trail: Trail) -> None:
    """A project form shown again with its errors (200) created nothing: unknown, no changes."""
    trail.login()
    assert trail.client.post("/projects/", data={"name": "  "}).status_code == 200
    shown_again = trail.stored("acme")[-1]
    assert (shown_again.outcome, shown_again.changes) == ("unknown", None)


def test_redirect_adding_the_slash_is_not_recorded(trail: Trail) -> None:
    """POST /projects (no slash) is redirected (308) to /projects/: only the repeated request is recorded."""
    trail.login()
    response = trail.client.post("/projects", data={"name": "slashless"}, follow_redirects=True)
    assert response.status_code == 200
    paths = [e.request.path for e in trail.stored("acme") if e.request and e.action.id != "login"]
    assert paths == ["/projects/"]
