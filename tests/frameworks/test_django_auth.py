"""Django's auth signals and honest outcomes, through the example project's HTML views.

The example registers models, so ORM capture is on and with it the honest outcome rules.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

django = pytest.importorskip("django")

from django.test import Client, override_settings  # noqa: E402

from audit_middleware.capture.changes import REGISTRY, Tracking  # noqa: E402
from audit_middleware.frameworks.django.conf import apply_settings  # noqa: E402
from audit_middleware.testing import CapturedEvents  # noqa: E402
from tests.frameworks.support import only  # noqa: E402


@pytest.fixture
def app(django_project: dict[type, Tracking]) -> None:
    """The example project's settings and model registrations, as at start-up."""
    assert apply_settings() is not None
    REGISTRY.restore(django_project)


def form_login(client: Client, username: str, password: str) -> Any:
    return client.post("/accounts/login/", {"username": username, "password": password})


def test_form_login_is_one_login_record_by_the_user(app: None, events: CapturedEvents) -> None:
    """LoginView: a Login by the user who logged in, in their tenant, and no generic record."""
    response = form_login(Client(), "alice", "wonderland")
    assert response.status_code == 302
    document = only(events)
    assert document["event"]["action"] == "login"
    assert document["event"]["outcome"] == "success"
    assert document["user"]["name"] == "alice"
    assert document["organization"] == {"id": "acme"}
    assert document["audit"]["resource"] == {"type": "session"}


def test_failed_form_login_is_login_failed_with_the_attempted_user(app: None, events: CapturedEvents) -> None:
    """A form shown again with 200 is a Login Failed naming the attempted user, not a login."""
    response = form_login(Client(), "dave", "not-his-password")
    assert response.status_code == 200
    document = only(events)
    assert document["event"]["action"] == "login_failed"
    assert document["event"]["outcome"] == "failure"
    assert document["user"] == {"name": "dave"}
    assert "not-his-password" not in json.dumps(document)


def test_test_client_login_outside_the_middleware_is_recorded(app: None, events: CapturedEvents) -> None:
    """client.login() bypasses the middleware; the signals still give Login and Logout by the user."""
    client = Client()
    assert client.login(username="bob", password="builder")
    client.logout()
    assert [(e.action.id, e.actor.name) for e in events] == [("login", "bob"), ("logout", "bob")]
    assert events[0].request is None


@pytest.mark.parametrize("method", ["get", "post"])
def test_get_and_post_logouts_are_recorded(app: None, events: CapturedEvents, method: str) -> None:
    """A logout link (GET) and a logout form (POST) are both a Logout naming who it was."""
    client = Client()
    client.force_login(django_user("erin"))
    events.clear()
    response = getattr(client, method)("/accounts/logout/")
    assert response.status_code == 302
    document = only(events)
    assert document["event"]["action"] == "logout"
    assert document["user"]["name"] == "erin"
    assert document["organization"] == {"id": "globex"}


def test_anonymous_post_redirected_to_login_is_a_denied_failure(app: None, events: CapturedEvents) -> None:
    """login_required's redirect to LOGIN_URL is a failure, with the reason, not a success."""
    response = Client().post("/console/pods/new/", {"name": "web", "image": "nginx"})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    document = only(events)
    assert document["event"]["outcome"] == "failure"
    assert document["audit"]["details"] == {"reason": "login required"}
    assert document["user"] == {"name": "anonymous"}


def test_form_shown_again_with_errors_is_not_a_success(app: None, events: CapturedEvents) -> None:
    """An invalid form re-rendered with 200 changed nothing: unknown; a valid one is the create."""
    client = Client()
    client.force_login(django_user("alice"))
    events.clear()  # force_login() is a login too
    assert client.post("/console/pods/new/", {"name": "", "image": ""}).status_code == 200
    refused = only(events)
    assert refused["event"]["outcome"] == "unknown"
    assert "changes" not in refused["audit"]
    events.clear()
    assert client.post("/console/pods/new/", {"name": "from-form", "image": "nginx"}).status_code == 302
    created = only(events)
    assert (created["event"]["action"], created["event"]["outcome"]) == ("create", "success")
    assert created["audit"]["resource"]["name"] == "from-form"


@override_settings(DEBUG=False)
def test_trailing_slash_redirect_is_not_audited(app: None, events: CapturedEvents) -> None:
    """APPEND_SLASH's 301 only normalises the URL: no record (the repeated request has one)."""
    response = Client().post("/console/pods/new")
    assert response.status_code == 301
    assert response["Location"] == "/console/pods/new/"
    assert list(events) == []


def test_without_orm_capture_the_status_decides_as_before(app: None, events: CapturedEvents) -> None:
    """With no model registered (and no option), a redirect to login is recorded as before."""
    REGISTRY.clear()
    Client().post("/console/pods/new/", {"name": "web"})
    assert only(events)["event"]["outcome"] == "success"


def django_user(username: str) -> Any:
    from django.contrib.auth.models import User  # noqa: PLC0415 - needs the app registry

    return User.objects.get(username=username)
