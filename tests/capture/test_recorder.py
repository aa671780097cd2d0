"""record(): outside and inside requests, outcome, late actor, broken resolvers and sinks, redaction."""

from __future__ import annotations

import contextvars
import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import audit_middleware
from audit_middleware import (
    Actor,
    AuditValidationError,
    ChangeSet,
    Resource,
    Rule,
    Scope,
    audit_this_request,
    configure,
    current,
    diff,
    record,
    set_actor,
)
from audit_middleware.capture.active import current_settings
from audit_middleware.capture.changes import ChangeGroup, row_change
from audit_middleware.capture.recorder import finish_bound
from audit_middleware.capture.rules import RouteRules
from audit_middleware.capture.staging import commit, stage
from audit_middleware.capture.wsgi import EnvironRequest, raw_environ
from audit_middleware.model.event import SYSTEM_ACTOR
from audit_middleware.sinks import MemorySink, Sink
from tests.wsgi_support import make_environ, request, simple_app


def test_record_outside_a_request_is_emitted_at_once(audit_sink):
    """Outside a request the record goes to the sink immediately, by the system actor."""
    event = record("restart", resource=Resource("pod", "web-1"), details={"why": "deploy"})
    assert audit_sink.events == [event]
    assert event.actor == SYSTEM_ACTOR
    assert event.actor.kind == "system"
    assert event.request is None
    assert event.outcome == "success"
    assert event.details == {"why": "deploy"}


def test_record_outside_a_request_with_an_actor(audit_sink):
    """A background job can name the actor it acts for."""
    actor = Actor(id="svc", name="billing", kind="service")
    record(
        "delete", resource=Resource("storage", "vol-1"), actor=actor, tenant="org-1", project=Scope("p", "P")
    )
    (event,) = audit_sink.events
    assert event.actor == actor
    assert event.tenant == Scope("org-1")
    assert event.project == Scope("p", "P")


def test_action_default_outcome_applies(audit_sink):
    """Login Failed defaults to a failure outcome."""
    assert record("login_failed").outcome == "failure"


def test_explicit_record_replaces_the_automatic_one(audit_sink):
    """A record() during a POST is the request's only entry, completed with the request facts."""

    def handle(environ):
        record("restart", resource=Resource("pod", "web-1"))

    response = request(simple_app(action=handle), "POST", "/pods/web-1/restart")
    assert response.code == 200
    (event,) = audit_sink.events
    assert event.action.id == "restart"
    assert event.resource == Resource("pod", "web-1")
    assert event.request is not None
    assert event.request.method == "POST"
    assert event.request.path == "/pods/web-1/restart"
    assert event.request.status_code == 200


def test_request_without_record_gets_one_automatic_entry(audit_sink):
    """Without record() a state-changing request still makes exactly one entry."""
    request(simple_app(), "DELETE", "/pods/7")
    (event,) = audit_sink.events
    assert event.action.id == "delete"
    assert event.resource == Resource("pods", "7")


def test_record_is_sent_only_when_the_response_is_known(audit_sink):
    """Inside a request nothing reaches the sink until the response is finished."""
    seen_during_request: list[int] = []

    def handle(environ):
        record("create", resource=Resource("pod"))
        seen_during_request.append(len(audit_sink.events))

    request(simple_app(action=handle))
    assert seen_during_request == [0]
    assert len(audit_sink.events) == 1


@pytest.mark.parametrize(
    "status", ["400 Bad Request", "403 Forbidden", "404 Not Found", "503 Service Unavailable"]
)
def test_outcome_is_failure_for_error_statuses(audit_sink, status):
    """A response of 400 or more turns a record's default outcome into failure."""
    request(simple_app(status, action=lambda environ: record("delete", resource=Resource("pod", "1"))))
    (event,) = audit_sink.events
    assert event.outcome == "failure"
    assert event.request is not None
    assert event.request.status_code == int(status[:3])


def test_automatic_record_outcome_follows_status(audit_sink):
    """The automatic record of a failed request is a failure; of a 2xx/3xx, a success."""
    request(simple_app("422 Unprocessable Entity"), "POST", "/pods")
    request(simple_app("302 Found"), "POST", "/pods")
    assert [e.outcome for e in audit_sink.events] == ["failure", "success"]


def test_explicit_outcome_wins_over_status(audit_sink):
    """An outcome given to record() is kept even when the response is an error."""
    request(simple_app("409 Conflict", action=lambda environ: record("update", outcome="success")))
    request(simple_app("200 OK", action=lambda environ: record("update", outcome="unknown")))
    assert [e.outcome for e in audit_sink.events] == ["success", "unknown"]


def test_actor_is_resolved_late(audit_sink):
    """The resolver runs at response time, after the app's own authentication set the user."""
    calls: list[object] = []

    def resolver(environ):
        calls.append(environ.get("app.user"))
        user = environ.get("app.user")
        return None if user is None else Actor(id=user, email=f"{user}@example.com")

    configure(sink=audit_sink, actor_resolver=resolver)

    def authenticate(environ):
        # the app authenticates (e.g. a bearer token) while handling the request
        environ["app.user"] = "ana"
        record("update", resource=Resource("project", "p1"))

    request(simple_app(action=authenticate), "PATCH", "/projects/p1")
    (event,) = audit_sink.events
    assert event.actor == Actor(id="ana", email="ana@example.com")
    assert calls
    assert calls[0] == "ana"


def test_unauthenticated_request_is_anonymous(audit_sink):
    """With no actor known, the record names an anonymous user rather than none."""
    request(simple_app(), "POST", "/login")
    (event,) = audit_sink.events
    assert event.actor.kind == "user"
    assert event.actor.name == "anonymous"


def test_set_actor_wins_over_resolver(audit_sink):
    """An actor handed over with set_actor() is used and the resolver is not needed."""
    configure(sink=audit_sink, actor_resolver=lambda environ: Actor(id="from-resolver"))
    request(simple_app(action=lambda environ: set_actor(Actor(id="from-dependency"))))
    (event,) = audit_sink.events
    assert event.actor.id == "from-dependency"


def test_explicit_actor_is_kept(audit_sink):
    """An actor given to record() inside a request is not replaced by the request's actor."""
    configure(sink=audit_sink, actor_resolver=lambda environ: Actor(id="requester"))
    admin = Actor(id="admin", impersonator=Actor(id="support"))
    request(simple_app(action=lambda environ: record("update", actor=admin)))
    (event,) = audit_sink.events
    assert event.actor == admin


def test_tenant_and_project_resolvers(audit_sink):
    """Tenant and project come from their resolvers when the app did not set them."""
    configure(
        sink=audit_sink,
        tenant_resolver=lambda environ: "org-9",
        project_resolver=lambda environ: Scope("proj-1", "Shop"),
    )
    request(simple_app(), "POST", "/pods")
    (event,) = audit_sink.events
    assert event.tenant == Scope("org-9")
    assert event.project == Scope("proj-1", "Shop")


def test_raising_resolver_still_produces_the_record(audit_sink):
    """A resolver bug costs the actor's identity, never the record, and is logged."""

    def resolver(environ):
        raise RuntimeError("session store down")

    configure(sink=audit_sink, actor_resolver=resolver, tenant_resolver=resolver)
    with capture_logs() as logs:
        response = request(simple_app(action=lambda environ: record("delete", resource=Resource("pod", "1"))))
    assert response.code == 200
    (event,) = audit_sink.events
    assert event.action.id == "delete"
    assert event.actor.name == "unresolved"
    assert event.tenant is None
    assert any("actor resolver raised RuntimeError: session store down" in log["event"] for log in logs)
    assert any("tenant resolver raised RuntimeError" in log["event"] for log in logs)


class BrokenSink(Sink):
    """A sink that always fails."""

    def emit(self, event):
        raise ConnectionError("sink is down")


def _kept(fallback: Path) -> list[dict]:
    """The records the last resort kept for sinks that raised."""
    return [json.loads(line) for path in (fallback / "other").glob("*.jsonl") for line in path.open()]


def test_raising_sink_keeps_the_record_privately(capsys, fallback_dir):
    """A sink that raises: the redacted record goes to a private file, not stderr; the response is fine."""
    configure(sink=BrokenSink())

    def handle(environ):
        record("restart", resource=Resource("pod", "p9"), details={"password": "S3CR3T"})

    response = request(simple_app(body=b"done", action=handle))
    audit_middleware.flush()  # the record is delivered on the delivery worker
    assert response.code == 200
    assert response.body == b"done"
    assert capsys.readouterr().err == ""
    (kept,) = _kept(fallback_dir)
    assert "sink is down" in kept["error"]
    assert kept["document"]["event"]["action"] == "restart"
    assert kept["document"]["audit"]["resource"] == {"type": "pod", "id": "p9"}
    assert kept["document"]["audit"]["details"] == {"password": "[REDACTED]"}


def test_raising_sink_outside_a_request(capsys, fallback_dir):
    """record() in a background job does not raise when the sink fails; the record is kept."""
    configure(sink=BrokenSink())
    event = record("stop", resource=Resource("virtual_machine", "vm-1"))
    assert event.action.id == "stop"
    assert [kept["document"]["event"]["id"] for kept in _kept(fallback_dir)] == [event.id]
    assert capsys.readouterr().err == ""


def test_redaction_before_the_sink(audit_sink):
    """Secrets in changes and details are masked before the sink sees them; the field stays listed."""
    changes = diff({"password": "old-pw", "name": "a"}, {"password": "new-pw", "name": "b"})
    record("update", resource=Resource("member", "u1"), changes=changes, details={"api_key": "k-123", "n": 1})
    (event,) = audit_sink.events
    assert event.changes is not None
    assert event.changes.before == {"password": "[REDACTED]", "name": "a"}
    assert event.changes.after == {"password": "[REDACTED]", "name": "b"}
    assert event.changes.fields == ("name", "password")
    assert event.details == {"api_key": "[REDACTED]", "n": 1}
    assert "old-pw" not in json.dumps(event.to_document())


def test_redaction_inside_a_request(audit_sink):
    """Records completed at the end of a request are redacted too."""

    def handle(environ):
        record("update", changes=({"token": "t1", "x": 1}, {"token": "t2", "x": 2}))

    request(simple_app(action=handle), "PUT", "/tokens/1")
    (event,) = audit_sink.events
    assert event.changes is not None
    assert event.changes.after == {"token": "[REDACTED]", "x": 2}
    assert "token" in event.changes.fields


def test_changes_given_as_a_pair_are_diffed(audit_sink):
    """changes=(before, after) records only what changed."""
    record("update", changes=({"a": 1, "b": 2}, {"a": 1, "b": 3}))
    (event,) = audit_sink.events
    assert event.changes is not None
    assert (dict(event.changes.before), dict(event.changes.after), event.changes.fields) == (
        {"b": 2},
        {"b": 3},
        ("b",),
    )


def test_record_validates_its_arguments():
    """Bad arguments to record() raise clear validation errors."""
    with pytest.raises(AuditValidationError, match="outcome 'ok'"):
        record("create", outcome="ok")  # type: ignore[arg-type]
    with pytest.raises(AuditValidationError, match="details must be a mapping"):
        record("create", details=["x"])  # type: ignore[arg-type]
    with pytest.raises(AuditValidationError, match="resource must be"):
        record("create", resource={"type": "pod"})  # type: ignore[arg-type]


def test_changes_of_another_shape_raise_at_the_call(audit_sink):
    """changes given as a mapping raise in record(), not later where the sink would lose the record."""
    with pytest.raises(AuditValidationError, match="changes must be"):
        record("update", changes={"before": {"a": 1}, "after": {"a": 2}})  # type: ignore[arg-type]
    assert audit_sink.events == []
    with pytest.raises(AuditValidationError, match="targets must be"):
        record("create", targets=["pod"])  # type: ignore[list-item]
    with pytest.raises(AuditValidationError, match="unknown action 'frobnicate'"):
        record("frobnicate")


def test_record_after_the_request_finished_is_not_lost(audit_sink):
    """A record made by work that outlives its request (same context) is sent at once, not dropped."""
    leftover: list[contextvars.Context] = []

    def handle(environ):
        leftover.append(contextvars.copy_context())

    request(simple_app(action=handle), "POST", "/jobs")
    assert len(audit_sink.events) == 1  # the automatic record
    event = leftover[0].run(record, "stop", resource=Resource("virtual_machine", "vm-2"))
    assert audit_sink.events[-1] is event
    assert event.request is not None
    assert event.request.path == "/jobs"
    assert current() is None


def test_unregistered_rule_action_keeps_the_record(audit_sink):
    """A rule naming an unregistered action still yields a record, with the generic action, and a warning."""
    configure(sink=audit_sink, rules=[Rule("POST", "/pods/<pod_id>/freeze", action="pod.freeze")])
    with capture_logs() as logs:
        request(simple_app(), "POST", "/pods/7/freeze")
        audit_middleware.flush()  # the record is finished on the delivery worker
    (event,) = audit_sink.events
    assert event.action.id == "create"
    assert any("'pod.freeze' is not registered" in log["event"] for log in logs)


def test_failure_while_building_the_record_never_reaches_the_app(audit_sink, monkeypatch):
    """A bug while completing the request's record is logged; the response is untouched."""

    def broken_decide(self, *args, **kwargs):
        raise RuntimeError("rules exploded")

    monkeypatch.setattr(RouteRules, "decide", broken_decide)
    with capture_logs() as logs:
        response = request(simple_app(body=b"fine"), "POST", "/pods")
        audit_middleware.flush()  # the record is finished on the delivery worker
    assert response.body == b"fine"
    assert any("rules exploded" in log["event"] for log in logs)


def test_two_operations_make_two_entries(audit_sink):
    """Two record() calls in one request are two operations: two entries, no automatic one."""

    def handle(environ):
        record("delete", resource=Resource("pod", "a"))
        record("delete", resource=Resource("pod", "b"))

    request(simple_app(action=handle), "POST", "/pods/bulk-delete")
    assert [e.resource for e in audit_sink.events] == [Resource("pod", "a"), Resource("pod", "b")]


def test_service_name_is_added(audit_sink):
    """The configured service name is put on every record."""
    configure(sink=audit_sink, service_name="shop-api")
    record("create")
    assert audit_sink.events[0].service == "shop-api"


def test_memory_sink_isolated_per_test(audit_sink):
    """Each test starts with an empty sink of its own (the autouse fixture)."""
    assert isinstance(audit_sink, MemorySink)
    assert audit_sink.events == []
    assert current() is None


# --- changes of registered models: the precedence ------------------------------------------


def _changes(*rows: tuple[str, str, dict | None, dict | None]) -> ChangeGroup:
    """A committed-to-be ORM operation of rows ``(kind, id, before, after)`` on resource type post."""
    built = []
    for kind, row_id, before, after in rows:
        row = row_change(kind, Resource("post", row_id, f"post {row_id}"), before, after)
        assert row is not None
        built.append(row)
    return ChangeGroup(built)


def _write(*rows, committed: bool = True):
    """An app action that writes rows (and commits them, unless told otherwise)."""

    def action(environ):
        staged = stage(_changes(*rows))
        if committed:
            commit(staged)

    return action


def test_committed_change_is_the_requests_record(audit_sink):
    """A POST that updated a row is recorded as that update: the row, its change, no generic record."""
    request(
        simple_app(action=_write(("update", "3", {"title": "a"}, {"title": "b"}))), "POST", "/posts/3/edit"
    )
    (event,) = audit_sink.events
    assert event.action.id == "update"
    assert event.resource == Resource("post", "3", "post 3")
    assert event.changes == ChangeSet({"title": "a"}, {"title": "b"}, ("title",))
    assert event.outcome == "success"
    assert event.request is not None
    assert event.request.path == "/posts/3/edit"


def test_uncommitted_change_is_not_recorded_as_done(audit_sink):
    """Changes staged but never committed (rolled back) leave only the generic record."""
    request(
        simple_app(action=_write(("delete", "3", {"title": "a"}, None), committed=False)), "POST", "/posts/3"
    )
    (event,) = audit_sink.events
    assert event.action.id == "create"  # the generic POST record, not a delete
    assert event.changes is None


def test_several_rows_make_one_record_with_targets(audit_sink):
    """Two rows changed in one request: one record, both rows as targets, changes keyed by row."""
    rows = (("delete", "1", {"title": "a"}, None), ("delete", "2", {"title": "b"}, None))
    request(simple_app(action=_write(*rows)), "POST", "/posts/purge")
    (event,) = audit_sink.events
    assert event.action.id == "delete"
    assert [t.id for t in event.targets] == ["1", "2"]
    assert event.details == {"count": 2}
    assert event.changes is not None
    assert event.changes.fields == ("post:1.title", "post:2.title")


def test_per_row_setting_records_each_row(audit_sink):
    """With change_records="per_row" each row of a request is its own record."""
    configure(sink=audit_sink, change_records="per_row")
    rows = (("delete", "1", {"title": "a"}, None), ("delete", "2", {"title": "b"}, None))
    request(simple_app(action=_write(*rows)), "POST", "/posts/purge")
    assert [(e.action.id, e.resource.id if e.resource else None) for e in audit_sink.events] == [
        ("delete", "1"),
        ("delete", "2"),
    ]
    with pytest.raises(ValueError, match="change_records"):
        configure(sink=audit_sink, change_records="each")  # type: ignore[arg-type]


def test_explicit_record_wins_and_gets_the_change_of_its_row(audit_sink):
    """record() replaces the ORM record; one naming a changed row (without changes) carries its change."""

    def action(environ):
        _write(("update", "3", {"status": "draft"}, {"status": "published"}))(environ)
        record("start", resource=Resource("post", "3"))

    request(simple_app(action=action), "POST", "/posts/3/publish")
    (event,) = audit_sink.events
    assert event.action.id == "start"
    assert event.changes == ChangeSet({"status": "draft"}, {"status": "published"}, ("status",))


def test_explicit_record_of_another_resource_keeps_no_change(audit_sink):
    """An explicit record about something else is sent as given; the ORM change adds no record."""

    def action(environ):
        _write(("update", "3", {"n": 1}, {"n": 2}))(environ)
        record("login", resource=Resource("session"))

    request(simple_app(action=action), "POST", "/login")
    (event,) = audit_sink.events
    assert event.action.id == "login"
    assert event.changes is None


def test_rule_action_is_enriched_with_the_changes(audit_sink):
    """A route rule names the action; the committed change gives it before/after values."""
    configure(
        sink=audit_sink,
        rules=[Rule("POST", "/pods/<pod_id>/start", action="start", resource_type="pod", id_param="pod_id")],
    )
    request(
        simple_app(action=_write(("update", "7", {"status": "stopped"}, {"status": "running"}))),
        "POST",
        "/pods/7/start",
    )
    (event,) = audit_sink.events
    assert event.action.id == "start"
    assert event.resource == Resource("pod", "7")
    assert event.targets == (
        Resource("post", "7", "post 7"),
    )  # the row changed, named beside the rule's resource
    assert event.changes == ChangeSet({"status": "stopped"}, {"status": "running"}, ("status",))


def test_a_get_that_changed_a_registered_row_is_recorded(audit_sink):
    """GET is not audited by default, but a committed change during one is."""
    request(simple_app(action=_write(("update", "3", {"views": 1}, {"views": 2}))), "GET", "/posts/3")
    (event,) = audit_sink.events
    assert event.action.id == "update"


def test_failed_request_with_committed_changes_says_failure_and_keeps_them(audit_sink):
    """Changes committed before the app answered 500 are recorded, with the failure."""
    request(
        simple_app("500 Internal Server Error", action=_write(("create", "9", None, {"title": "x"}))),
        "POST",
        "/posts",
    )
    (event,) = audit_sink.events
    assert event.action.id == "create"
    assert event.outcome == "failure"
    assert event.changes is not None


def test_skipped_request_records_no_changes_either(audit_sink):
    """audit_this_request(False) silences the ORM record as well."""

    def action(environ):
        _write(("update", "3", {"n": 1}, {"n": 2}))(environ)
        audit_this_request(False)

    request(simple_app(action=action), "POST", "/posts/3")
    assert audit_sink.events == []


def test_changes_outside_a_request_are_their_own_record(audit_sink):
    """Outside a request a committed operation is recorded at once, by the system actor."""
    commit(stage(_changes(("create", "1", None, {"title": "a"}))))
    (event,) = audit_sink.events
    assert event.action.id == "create"
    assert event.actor == SYSTEM_ACTOR
    assert event.request is None
    assert event.changes is not None


def test_changes_committed_after_the_response_keep_the_requests_facts(audit_sink):
    """A commit that comes after the request finished is its own record, with the request's facts."""
    staged: list = []
    request(
        simple_app(
            action=lambda environ: staged.append(stage(_changes(("update", "3", {"n": 1}, {"n": 2}))))
        ),
        "POST",
        "/posts/3",
    )
    assert [e.action.id for e in audit_sink.events] == ["create"]
    commit(staged[0])
    update = audit_sink.events[-1]
    assert update.action.id == "update"
    assert update.request is not None
    assert update.request.path == "/posts/3"


def test_a_broken_commit_never_raises(audit_sink):
    """A bug while recording committed changes is logged, not raised into the ORM's commit."""
    broken = stage(_changes(("update", "3", {"n": 1}, {"n": 2})))
    broken.group.rows = [object()]  # type: ignore[list-item]
    with capture_logs() as logs:
        commit(broken)
    assert any("committed changes" in entry["event"] for entry in logs)


def test_a_request_ended_early_is_not_queued_again(audit_sink):
    """An adapter that ends a request when the framework does (Flask's teardown, the body being
    complete) leaves the middleware's own end at close() nothing to do: one record."""
    environ = make_environ("POST", "/pods")
    stand_in = EnvironRequest(environ, raw_environ(environ), current_settings(), True)
    stand_in.status, stand_in.headers = "201 Created", []
    finish_bound(stand_in)
    finish_bound(stand_in, failed=True)  # the server closes the body afterwards
    audit_middleware.flush()
    (event,) = audit_sink.events
    assert (event.action.id, event.outcome) == ("create", "success")
    assert event.request is not None
    assert event.request.status_code == 201
