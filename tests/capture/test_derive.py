"""The worker's half of a request's record: derived from raw values only, never from the app's objects."""

from __future__ import annotations

from typing import Any

from audit_middleware.capture.completion import ANONYMOUS
from audit_middleware.capture.context import RequestContext
from audit_middleware.capture.derive import RawRequestJob, RequestJob
from audit_middleware.capture.settings import CaptureSettings
from audit_middleware.capture.wsgi import EnvironRequest
from audit_middleware.model.event import Actor, Scope


class Untouchable:
    """An app object the worker must never read (a framework request, say)."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the worker read {name!r} of an app object")


def _job(**fields: Any) -> RequestJob:
    context = RequestContext(
        method="POST",
        path="/pods",
        peer="203.0.113.9",
        user_agent_raw="curl/8",
        native_request=Untouchable(),
        status_code=201,
        **fields,
    )
    return RequestJob(context, False, 1_700_000_000_000, Actor(id="u1"), Scope("acme"), None, False)


def test_events_come_from_the_kept_values_without_calling_resolvers() -> None:
    """Actor, tenant and time are the ones kept on the request thread; resolvers are not called again."""

    def resolver(_request: object) -> Actor:
        raise AssertionError("a resolver ran on the worker")

    config = CaptureSettings(actor_resolver=resolver, tenant_resolver=resolver)
    (event,) = _job().events(config)
    assert event.actor == Actor(id="u1")
    assert event.tenant == Scope("acme")
    assert event.unix_ms == 1_700_000_000_000
    assert event.request is not None
    assert event.request.client_ip == "203.0.113.9"
    assert event.request.user_agent == "curl/8"
    assert event.request.status_code == 201


def test_an_unaudited_method_derives_nothing() -> None:
    """A GET without a rule or changes gives no record, also when it reaches the worker."""
    job = _job()
    job.context.method = "GET"
    assert job.events(CaptureSettings()) == []


def test_a_redirect_to_the_login_page_by_nobody_is_a_failure_in_honest_mode() -> None:
    """The outcome rules read the kept actor: an anonymous redirect to /login is a failure."""
    job = _job(location="/login")
    job.context.status_code = 302
    job.actor = ANONYMOUS
    job.honest = True
    (event,) = job.events(CaptureSettings())
    assert event.outcome == "failure"
    assert event.details == {"reason": "login required"}


def _raw_job(environ: dict[str, Any], status: str, *, failed: bool) -> RawRequestJob:
    request = EnvironRequest(None, environ, CaptureSettings(), audited=True)
    request.status, request.headers = status, [("Location", "/login")]
    request.end(failed=failed)
    return RawRequestJob(request, 1_700_000_000_000, honest=False)


def test_a_raw_request_is_built_from_what_its_middleware_kept() -> None:
    """The worker builds the context of a request nothing asked about from the environ's copy."""
    environ = {"REQUEST_METHOD": "DELETE", "PATH_INFO": "/pods/p-1", "REMOTE_ADDR": "203.0.113.9"}
    (event,) = _raw_job(environ, "204 No Content", failed=False).events(CaptureSettings())
    assert (event.action.id, event.outcome, event.actor) == ("delete", "success", ANONYMOUS)
    assert event.unix_ms == 1_700_000_000_000
    assert event.request is not None
    assert (event.request.path, event.request.status_code, event.request.client_ip) == (
        "/pods/p-1",
        204,
        "203.0.113.9",
    )


def test_a_raw_request_that_failed_is_a_500_failure() -> None:
    """A request whose app raised before answering is a 500 failure, also when built on the worker."""
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/pods", "REMOTE_ADDR": "203.0.113.9"}
    (event,) = _raw_job(environ, "200 OK", failed=True).events(CaptureSettings())
    assert event.outcome == "failure"
    assert event.request is not None
    assert event.request.status_code == 500


def test_a_raw_get_derives_nothing() -> None:
    """A raw request of a method nothing audits gives no record on the worker either."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/pods", "REMOTE_ADDR": "203.0.113.9"}
    assert _raw_job(environ, "200 OK", failed=False).events(CaptureSettings()) == []
