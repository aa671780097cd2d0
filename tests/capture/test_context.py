"""Context outside requests: audit_context(), and set_actor()/set_tenant()/set_project() there."""

from __future__ import annotations

import pytest

from audit_middleware import (
    Actor,
    AuditError,
    Resource,
    Scope,
    audit_context,
    record,
    set_actor,
    set_project,
    set_tenant,
)
from audit_middleware.capture.changes import ChangeGroup, row_change
from audit_middleware.capture.staging import commit, stage
from audit_middleware.model.event import SYSTEM_ACTOR
from tests.wsgi_support import make_environ, request, simple_app

CRON = Actor(id="cron", name="nightly-import", kind="service")


def test_records_in_a_context_name_its_actor_tenant_and_project(audit_sink):
    """A job's record is by the context's actor, in its tenant and project."""
    with audit_context(actor=CRON, tenant="acme", project=Scope("p1", "Website")):
        record("delete", resource=Resource("storage", "vol-1"))
    (event,) = audit_sink.events
    assert event.actor == CRON
    assert event.tenant == Scope("acme")
    assert event.project == Scope("p1", "Website")
    assert event.request is None


def test_what_a_record_names_itself_wins(audit_sink):
    """An actor or tenant given to record() wins over the context's."""
    other = Actor(id="ops")
    with audit_context(actor=CRON, tenant="acme"):
        record("delete", actor=other, tenant="globex")
    (event,) = audit_sink.events
    assert (event.actor, event.tenant) == (other, Scope("globex"))


def test_without_a_context_the_system_acts(audit_sink):
    """Outside any request and context, records are by the system actor."""
    record("restart")
    assert audit_sink.events[0].actor == SYSTEM_ACTOR


def test_nested_contexts_inherit_what_they_do_not_set(audit_sink):
    """An inner context keeps the outer actor and tenant unless it names its own."""
    with audit_context(actor=CRON, tenant="acme"), audit_context(project="p2"):
        record("update")
    (event,) = audit_sink.events
    assert (event.actor, event.tenant, event.project) == (CRON, Scope("acme"), Scope("p2"))


def test_request_and_trace_ids_tie_the_record_to_its_origin(audit_sink):
    """Ids handed to the context (a task queued by a request) appear on its records."""
    with audit_context(request_id="req-1", trace_id="4bf92f3577b34da6a3ce929d0e0e4736"):
        record("restart")
    (event,) = audit_sink.events
    assert event.request is not None
    assert (event.request.request_id, event.request.trace_id) == ("req-1", "4bf92f3577b34da6a3ce929d0e0e4736")
    assert event.request.method is None


def test_set_actor_and_set_tenant_work_inside_a_context(audit_sink):
    """Inside audit_context() the setters change the context."""
    with audit_context():
        set_actor(CRON)
        set_tenant("acme", project="p1")
        set_project("p9")
        record("update")
    (event,) = audit_sink.events
    assert (event.actor, event.tenant, event.project) == (CRON, Scope("acme"), Scope("p9"))


@pytest.mark.parametrize(
    ("setter", "value"),
    [(set_actor, CRON), (set_tenant, "acme"), (set_project, "p1")],
    ids=["set_actor", "set_tenant", "set_project"],
)
def test_setters_outside_a_request_and_context_raise_clearly(setter, value):
    """With nowhere to put the value, the setter says how to fix the call."""
    with pytest.raises(AuditError, match=r"outside a request and outside audit_context\(\)"):
        setter(value)


def test_changes_committed_in_a_context_are_by_its_actor(audit_sink):
    """An ORM operation in a job is recorded by the context's actor, in its tenant."""
    with audit_context(actor=CRON, tenant="acme"):
        row = row_change("create", Resource("pod", "p-1"), None, {"name": "web"})
        assert row is not None
        staged = stage(ChangeGroup([row]))
    commit(staged)  # after the block: the context was noted when the rows were written
    (event,) = audit_sink.events
    assert (event.actor, event.tenant) == (CRON, Scope("acme"))


def test_a_context_inside_a_request_is_a_scope_of_its_own(audit_sink):
    """Records in an audit_context() within a request are separate, with the request's ids."""
    seen: dict[str, str] = {}

    def handle(environ):
        set_actor(Actor(id="ann"))
        with audit_context(actor=CRON):
            record("restart", resource=Resource("pod", "p-1"))
        record("update", resource=Resource("pod", "p-1"))
        seen["request_id"] = environ["HTTP_X_REQUEST_ID"]

    request(simple_app(action=handle), "POST", "/pods/p-1", headers={"X-Request-ID": "req-42"})
    restart, update = audit_sink.events
    assert (restart.action.id, restart.actor) == ("restart", CRON)
    assert restart.request is not None
    assert restart.request.request_id == "req-42"
    assert restart.request.path is None  # not the request's record
    assert (update.action.id, update.actor.id) == ("update", "ann")
    assert update.request is not None
    assert update.request.path == "/pods/p-1"


def test_the_context_ends_with_its_block(audit_sink):
    """After the block neither the context nor a detached request stays behind."""
    with audit_context(actor=CRON):
        pass
    record("restart")
    assert audit_sink.events[0].actor == SYSTEM_ACTOR
    assert make_environ()  # the helpers still build requests normally
