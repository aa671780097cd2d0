"""Honest outcomes: what an automatic record may claim when nothing else says what happened."""

from __future__ import annotations

from typing import Any

import pytest

from audit_middleware import Actor, ASGIAuditMiddleware, Resource, configure, record, set_actor
from audit_middleware.capture.changes import REGISTRY, Tracking
from audit_middleware.capture.outcomes import LOGIN_REQUIRED, Verdict, judge
from audit_middleware.capture.recorder import record_detected
from tests.wsgi_support import request


def verdict(**overrides: Any) -> Verdict:
    values: dict[str, Any] = {
        "status": 200,
        "failed": False,
        "honest": True,
        "path": "/items",
        "location": None,
        "denied": None,
        "anonymous": True,
        "login_paths": (),
    }
    return judge(**{**values, **overrides})


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({}, Verdict(True, "unknown"), id="2xx-nothing-known-is-unknown"),
        pytest.param({"failed": True, "status": 500}, Verdict(True, "failure"), id="failed"),
        pytest.param(
            {"status": 302, "location": "/login?next=/items"},
            Verdict(True, "failure", LOGIN_REQUIRED),
            id="to-login",
        ),
        pytest.param(
            {"status": 302, "location": "/sso", "login_paths": ("/sso",)},
            Verdict(True, "failure", LOGIN_REQUIRED),
            id="to-configured-login",
        ),
        pytest.param(
            {"status": 302, "location": "/login", "anonymous": False},
            Verdict(True, "unknown"),
            id="signed-in-to-login",
        ),
        pytest.param({"status": 307, "location": "/items/"}, Verdict(False, "unknown"), id="slash-307"),
        pytest.param(
            {"status": 308, "location": "http://host/items/"},
            Verdict(False, "unknown"),
            id="slash-308-absolute",
        ),
        pytest.param(
            {"status": 301, "path": "/items/", "location": "/items"},
            Verdict(False, "unknown"),
            id="slash-removed-301",
        ),
        pytest.param(
            {"status": 302, "location": "/items"}, Verdict(True, "unknown"), id="post-redirect-get-same-path"
        ),
        pytest.param({"status": 307, "location": "/items/7"}, Verdict(True, "unknown"), id="307-elsewhere"),
        pytest.param(
            {"denied": LOGIN_REQUIRED, "status": 302, "location": "/"},
            Verdict(True, "failure", LOGIN_REQUIRED),
            id="denied",
        ),
        pytest.param({"honest": False}, Verdict(True, "success"), id="status-mode-2xx"),
        pytest.param(
            {"honest": False, "status": 307, "location": "/items/"},
            Verdict(True, "success"),
            id="status-mode-redirect",
        ),
        pytest.param(
            {"honest": False, "denied": LOGIN_REQUIRED},
            Verdict(True, "failure", LOGIN_REQUIRED),
            id="status-mode-denied",
        ),
    ],
)
def test_outcome_table(overrides: dict[str, Any], expected: Verdict) -> None:
    """Each row of the documented outcome table."""
    assert verdict(**overrides) == expected


def redirecting_app(status: str, location: str, action: Any = None) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if action is not None:
            action(environ)
        start_response(
            status, [("Location", location), ("Content-Type", "text/plain"), ("Content-Length", "0")]
        )
        return [b""]

    return app


def test_honest_mode_is_the_default_when_orm_capture_is_on(audit_sink: Any) -> None:
    """With a model registered, a POST that changed nothing is unknown; with none, a success."""
    redirect = redirecting_app("302 Found", "/auth/login?next=/posts/create")
    request(redirect, "POST", "/posts/create")
    REGISTRY.add(object, Tracking("thing"))
    request(redirect, "POST", "/posts/create")
    before, after = audit_sink.events
    assert (before.outcome, before.details) == ("success", {})
    assert (after.outcome, after.details) == ("failure", {"reason": LOGIN_REQUIRED})


def test_honest_mode_can_be_asked_for_and_turned_off(audit_sink: Any) -> None:
    """configure(honest_outcomes=...) wins over the default in both directions."""
    configure(sink=audit_sink, honest_outcomes=True)
    request(redirecting_app("307 Temporary Redirect", "/pods/"), "POST", "/pods")
    assert audit_sink.events == []  # the repeated request is the one recorded
    REGISTRY.add(object, Tracking("thing"))
    configure(sink=audit_sink, honest_outcomes=False)
    request(redirecting_app("307 Temporary Redirect", "/pods/"), "POST", "/pods")
    assert [e.outcome for e in audit_sink.events] == ["success"]


def test_configured_login_paths(audit_sink: Any) -> None:
    """An app whose login page has another name says which it is."""
    configure(sink=audit_sink, honest_outcomes=True, login_paths=["/welcome"])
    request(redirecting_app("303 See Other", "/welcome?next=/x"), "POST", "/x")
    assert audit_sink.events[0].outcome == "failure"
    with pytest.raises(TypeError, match="not one string"):
        configure(sink=audit_sink, login_paths="/welcome")


def test_signed_in_user_redirected_is_not_called_anonymous(audit_sink: Any) -> None:
    """A redirect to the login page of someone signed in is no denial (re-authentication)."""
    configure(sink=audit_sink, honest_outcomes=True)
    request(redirecting_app("302 Found", "/login", lambda environ: set_actor(Actor(id="ann"))), "POST", "/x")
    assert audit_sink.events[0].outcome == "unknown"


def test_explicit_and_rule_records_keep_their_outcomes(audit_sink: Any) -> None:
    """The rules are for the generic record only: an explicit record says what happened."""
    configure(sink=audit_sink, honest_outcomes=True)
    request(
        redirecting_app(
            "302 Found", "/pods", lambda environ: record("delete", resource=Resource("pod", "1"))
        ),
        "POST",
        "/pods/1/delete",
    )
    assert audit_sink.events[0].outcome == "success"


def test_the_apps_own_record_wins_over_a_detected_one(audit_sink: Any) -> None:
    """A login a framework signal saw and the app recorded too is one record, the app's."""

    def handle(environ: dict[str, Any]) -> None:
        record_detected("login", actor=Actor(id="from-signal"))
        record("login", resource=Resource("session"), actor=Actor(id="from-app"))
        record_detected("logout", actor=Actor(id="from-signal"))

    request(redirecting_app("302 Found", "/", handle), "POST", "/login")
    assert [(e.action.id, e.actor.id) for e in audit_sink.events] == [
        ("login", "from-app"),
        ("logout", "from-signal"),
    ]


async def test_asgi_redirects_are_judged_too(audit_sink: Any) -> None:
    """The ASGI middleware reads the Location of a redirect: a slash redirect is not audited."""
    configure(sink=audit_sink, honest_outcomes=True)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 307, "headers": [(b"location", b"/pods/")]})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    scope = {"type": "http", "method": "POST", "path": "/pods", "headers": [], "client": ("127.0.0.1", 1)}
    await ASGIAuditMiddleware(app)(scope, receive, send)
    assert audit_sink.events == []
