"""The per-request context (derived values computed once, the setters, isolation per thread and task)
and the context outside requests (audit_context())."""

from __future__ import annotations

import asyncio
import contextvars
import re
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from audit_middleware import AuditError, Resource, audit_context, record
from audit_middleware.capture import context as ctx
from audit_middleware.capture.active import current_settings
from audit_middleware.capture.changes import ChangeGroup, row_change
from audit_middleware.capture.clientip import ProxyTrust
from audit_middleware.capture.context import (
    RequestContext,
    audit_this_request,
    bind,
    current,
    set_actor,
    set_project,
    set_route,
    set_tenant,
    unbind,
)
from audit_middleware.capture.staging import commit, stage
from audit_middleware.model.event import SYSTEM_ACTOR, Actor, Scope
from tests.wsgi_support import make_environ, simple_app
from tests.wsgi_support import request as wsgi_request

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[object]:
    """Replace ``context.<name>`` by a wrapper that records each call's result."""
    calls: list[object] = []
    original: Callable[..., Any] = getattr(ctx, name)

    def wrapper(*args: Any) -> Any:
        result = original(*args)
        calls.append(result)
        return result

    monkeypatch.setattr(ctx, name, wrapper)
    return calls


def request(**fields: Any) -> RequestContext:
    return RequestContext(method="POST", path="/pods", **fields)


# -- derived values ---------------------------------------------------------------------


def test_client_ip_is_the_peer_when_no_proxy_is_trusted() -> None:
    """Without trust, a forwarded header is kept in the chain but never chooses the IP."""
    context = request(peer="10.0.0.2", x_forwarded_for="6.6.6.6")
    assert context.client.ip == "10.0.0.2"
    assert context.client.chain == ("6.6.6.6",)


def test_client_ip_follows_the_configured_hop_count() -> None:
    """With one trusted hop, the rightmost forwarded address is the client."""
    context = request(peer="10.0.0.2", x_forwarded_for="6.6.6.6, 198.51.100.7", trust=ProxyTrust(hops=1))
    assert context.client.ip == "198.51.100.7"


def test_client_ip_reads_the_forwarded_header_only_when_configured() -> None:
    """Trust of the Forwarded header reads it and ignores X-Forwarded-For."""
    context = request(
        peer="10.0.0.2",
        x_forwarded_for="6.6.6.6",
        forwarded="for=198.51.100.9",
        trust=ProxyTrust(hops=1, header="forwarded"),
    )
    assert context.client.ip == "198.51.100.9"


def test_client_is_resolved_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client address is resolved on first use and then reused."""
    calls = counting(monkeypatch, "resolve_client_ip")
    context = request(peer="10.0.0.2")
    assert calls == []
    first = context.client
    assert context.client is first
    assert context.facts().client_ip == "10.0.0.2"
    assert len(calls) == 1


def test_a_valid_request_id_is_kept() -> None:
    """A well-formed incoming X-Request-ID becomes the request id."""
    assert request(request_id_raw="req-42.a:b_c").request_id == "req-42.a:b_c"


@pytest.mark.parametrize("raw", [None, "", "has space", "x" * 129, "line\nbreak", "ünï"])
def test_a_missing_or_bad_request_id_is_replaced_by_a_stable_new_one(raw: str | None) -> None:
    """Otherwise a random 32-hex id is made, and the same one is returned every time."""
    context = request(request_id_raw=raw)
    made = context.request_id
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert context.request_id == made
    assert context.facts().request_id == made


def test_two_requests_get_different_ids() -> None:
    """Generated ids are not shared between requests."""
    assert request().request_id != request().request_id


def test_trace_id_from_traceparent() -> None:
    """A valid W3C traceparent gives the trace id; an invalid one gives None."""
    assert request(traceparent=TRACEPARENT).trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert request(traceparent="00-" + "0" * 32 + "-00f067aa0ba902b7-01").trace_id is None
    assert request().trace_id is None


def test_a_missing_trace_id_is_looked_for_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a None result is remembered, so a bad header is parsed once."""
    calls = counting(monkeypatch, "trace_id_from_traceparent")
    context = request(traceparent="garbage")
    assert context.trace_id is None
    assert context.trace_id is None
    assert calls == [None]


def test_user_agent_is_truncated_past_the_limit() -> None:
    """A user agent longer than the limit keeps its start and says how much was dropped."""
    context = request(user_agent_raw="A" * 40, user_agent_limit=16)
    assert context.user_agent == "A" * 16 + "\u2026[truncated 24 chars]"
    assert request(user_agent_raw="curl/8.5.0").user_agent == "curl/8.5.0"
    assert request().user_agent is None


def test_user_agent_is_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The truncation runs on first use only, a None result included."""
    calls = counting(monkeypatch, "truncate_user_agent")
    context = request(user_agent_raw="curl\x00/8")
    assert context.user_agent == "curl\ufffd/8"
    assert context.user_agent == "curl\ufffd/8"
    absent = request()
    assert absent.user_agent is None
    assert absent.user_agent is None
    assert calls == ["curl\ufffd/8", None]


def test_facts_gather_the_request_part_of_a_record() -> None:
    """facts() carries method, path, route, status, IP, chain, agent, ids as derived."""
    context = request(
        peer="10.0.0.2",
        x_forwarded_for="198.51.100.7",
        trust=ProxyTrust(hops=1),
        user_agent_raw="curl/8",
        request_id_raw="req-1",
        traceparent=TRACEPARENT,
    )
    context.route = "/pods"
    context.status_code = 201
    facts = context.facts()
    assert (facts.method, facts.path, facts.route, facts.status_code) == ("POST", "/pods", "/pods", 201)
    assert (facts.client_ip, facts.forwarded_chain) == ("198.51.100.7", ("198.51.100.7",))
    assert (facts.user_agent, facts.request_id, facts.trace_id) == (
        "curl/8",
        "req-1",
        "4bf92f3577b34da6a3ce929d0e0e4736",
    )


# -- setters inside and outside a request -----------------------------------------------


def test_setters_fill_in_the_current_request() -> None:
    """set_actor, set_tenant, set_project, set_route and audit_this_request change the bound context."""
    context = request()
    token = bind(context)
    try:
        actor = Actor(id="42")
        set_actor(actor)
        set_tenant("acme", Scope("p1", "Project one"))
        set_route("/pods/<pod_id>")
        audit_this_request()
        assert context.actor is actor
        assert context.tenant == Scope("acme")
        assert context.project == Scope("p1", "Project one")
        assert context.route == "/pods/<pod_id>"
        assert (context.force_audit, context.skip_audit) == (True, False)
        audit_this_request(False)
        assert (context.force_audit, context.skip_audit) == (False, True)
        set_project("p2")
        assert context.project == Scope("p2")
        set_actor(None)
        assert context.actor is None
    finally:
        unbind(token)


def test_set_tenant_leaves_the_project_unless_given() -> None:
    """set_tenant(t) keeps the project; set_tenant(t, None) clears it."""
    context = request()
    token = bind(context)
    try:
        set_project("p1")
        set_tenant(Scope("acme", "Acme"))
        assert context.project == Scope("p1")
        assert context.tenant == Scope("acme", "Acme")
        set_tenant("globex", None)
        assert context.tenant == Scope("globex")
        assert context.project is None
    finally:
        unbind(token)


def test_route_and_audit_choice_outside_a_request_do_nothing() -> None:
    """Outside a request set_route and audit_this_request are silent no-ops; no context appears."""
    assert current() is None
    set_route("/x")
    audit_this_request()
    audit_this_request(False)
    assert current() is None


# -- bind and unbind --------------------------------------------------------------------


def test_unbind_restores_the_previous_context() -> None:
    """Nested binds unwind in order."""
    outer, inner = request(), request()
    outer_token = bind(outer)
    inner_token = bind(inner)
    assert current() is inner
    unbind(inner_token)
    assert current() is outer
    unbind(outer_token)
    assert current() is None


def test_a_token_from_another_context_clears_instead_of_raising() -> None:
    """A token made in another Context (a server closing on another thread) clears the current value."""
    foreign_token = contextvars.copy_context().run(bind, request())
    token = bind(request())
    unbind(foreign_token)
    assert current() is None
    unbind(token)  # the token of this context still resets cleanly
    assert current() is None


def test_threads_see_only_their_own_request() -> None:
    """Two threads bound at the same time each read their own context; the caller's stays unset."""
    barrier = threading.Barrier(2)
    seen: dict[str, object] = {}

    def handle(name: str) -> None:
        mine = request()
        token = bind(mine)
        try:
            set_route(f"/{name}")
            barrier.wait(5)  # both bound now
            found = current()
            seen[name] = found is mine and found.route == f"/{name}"
        finally:
            unbind(token)

    threads = [threading.Thread(target=handle, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == {"a": True, "b": True}
    assert current() is None


async def test_tasks_see_only_their_own_request() -> None:
    """Concurrent asyncio tasks each keep the context they bound, across awaits."""
    both_bound = asyncio.Event()
    bound = 0

    async def handle(name: str) -> bool:
        nonlocal bound
        mine = request()
        token = bind(mine)
        try:
            set_tenant(name)
            bound += 1
            if bound == 2:
                both_bound.set()
            await asyncio.wait_for(both_bound.wait(), 5)
            found = current()
            return found is mine and found.tenant == Scope(name)
        finally:
            unbind(token)

    assert await asyncio.gather(handle("acme"), handle("globex")) == [True, True]
    assert current() is None


# -- context outside requests: audit_context() ----------------------------------------

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

    wsgi_request(simple_app(action=handle), "POST", "/pods/p-1", headers={"X-Request-ID": "req-42"})
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


# -- the lazy stand-in a middleware binds ---------------------------------------------------


class CountingRequest(ctx.LazyContext):
    """A stand-in whose context is a fixed GET, counting how often it is built."""

    __slots__ = ()
    builds: ClassVar[list[RequestContext]] = []

    def build(self) -> RequestContext:
        context = RequestContext(method="GET", path=self.kept["path"])
        CountingRequest.builds.append(context)
        return context

    def apply_start(self, context: RequestContext) -> None:
        context.status_code = self.status


def lazy(path: str = "/pods") -> CountingRequest:
    CountingRequest.builds.clear()
    return CountingRequest(None, {"path": path}, current_settings())


def test_a_lazy_context_is_built_once_on_first_use_and_takes_the_response_start():
    """current() builds the context the first time, with the status kept so far; later calls get the same."""
    stand_in = lazy()
    stand_in.status = 204
    token = bind(stand_in)
    try:
        assert ctx.opened() is None
        first = current()
        assert first is not None
        assert (first.path, first.status_code) == ("/pods", 204)
        assert current() is first
        assert ctx.opened() is first
    finally:
        unbind(token)
    assert CountingRequest.builds == [first]


def test_hooks_and_setters_wait_for_the_context_and_apply_in_order():
    """set_actor, set_tenant, set_project, set_route and when_open hooks build nothing; on first use
    they apply in the order they were called."""
    stand_in = lazy()
    token = bind(stand_in)
    try:
        set_actor(Actor(id="first"))
        set_tenant("acme", project="web")
        set_route("/pods/<pod_id>")
        set_actor(Actor(id="ann"))
        set_project("api")
        assert ctx.when_open(lambda context: setattr(context, "login_path", "/login")) is True
        assert CountingRequest.builds == []
        context = current()
        assert context is not None
        assert context.actor == Actor(id="ann")
        assert (context.tenant, context.project) == (Scope("acme"), Scope("api"))
        assert (context.route, context.login_path) == ("/pods/<pod_id>", "/login")
        ctx.when_open(lambda built: setattr(built, "route", "/now"))  # built already: runs at once
        assert context.route == "/now"
    finally:
        unbind(token)


def audited_lazy(path: str = "/pods") -> CountingRequest:
    stand_in = lazy(path)
    stand_in.audited = True
    return stand_in


def test_a_middlewares_hook_waits_even_in_an_audited_request():
    """A request-thread hook (a middleware's ``on_open``) builds nothing for a request that may be
    audited; it runs when the request thread builds the context."""
    stand_in = audited_lazy()
    stand_in.hooks = [lambda context: setattr(context, "route", "/pods/<pod_id>")]
    token = bind(stand_in)
    try:
        assert CountingRequest.builds == []
        context = current()
        assert context is not None
        assert context.route == "/pods/<pod_id>"
    finally:
        unbind(token)
    # when_open itself builds an audited request's context at once
    stand_in = audited_lazy()
    token = bind(stand_in)
    try:
        assert ctx.when_open(lambda context: setattr(context, "route", "/now"))
        assert len(CountingRequest.builds) == 1
        assert CountingRequest.builds[0].route == "/now"
    finally:
        unbind(token)


def test_values_handed_over_reach_the_context_wherever_it_is_built():
    """hand_over() builds nothing; the request-thread hooks are dropped when the request is handed
    to the worker raw, while the handed values still apply when the context is built there."""
    stand_in = audited_lazy()
    ran: list[str] = []
    stand_in.hooks = [lambda context: ran.append("reads the framework")]
    stand_in.hand_over(lambda context: setattr(context, "actor", Actor(id="ann")))
    stand_in.hand_over(lambda context: setattr(context, "route", "/pods/<pod_id>"))
    assert CountingRequest.builds == []
    stand_in.end(failed=False)
    stand_in.drop_thread_hooks()
    context = stand_in.open()
    assert (context.actor, context.route) == (Actor(id="ann"), "/pods/<pod_id>")
    assert ran == []
    stand_in.hand_over(lambda built: setattr(built, "login_path", "/login"))  # built: applied at once
    assert context.login_path == "/login"


def test_hooks_run_before_the_handed_values():
    """A request-thread hook (an adapter's user lookup) runs first; values handed over win."""
    stand_in = audited_lazy()
    stand_in.hand_over(lambda context: setattr(context, "route", "/handed"))
    stand_in.hooks = [lambda context: setattr(context, "route", "/hook")]
    assert stand_in.open().route == "/handed"


def test_a_lazy_context_built_after_its_request_failed_is_finished_with_a_500():
    """A context first asked for after the request ended (a thread it started) is finished, so its
    records go out at once, and a failed request reads as 500."""
    stand_in = lazy()
    stand_in.status = 200
    assert stand_in.end(failed=True) is None
    context = stand_in.open()
    assert context.finished is True
    assert context.status_code == 500


def test_threads_asking_at_once_get_one_context():
    """Several threads of one request building its context at the same moment all get the same one."""
    stand_in = lazy()
    barrier = threading.Barrier(8, timeout=10)
    got: list[RequestContext] = []

    def ask() -> None:
        barrier.wait()
        got.append(stand_in.open())

    threads = [threading.Thread(target=contextvars.copy_context().run, args=(ask,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 8
    assert all(context is got[0] for context in got)
    assert len(CountingRequest.builds) == 1


def test_outside_a_request_nothing_is_bound():
    """opened() and in_request() say there is no request, and when_open runs nothing."""
    ran: list[object] = []
    assert ctx.opened() is None
    assert ctx.in_request() is False
    assert ctx.when_open(ran.append) is False
    assert ran == []


def test_audit_context_in_a_lazy_request_starts_from_what_was_set():
    """audit_context() inside an unbuilt request builds it and starts from its actor."""
    token = bind(lazy())
    try:
        set_actor(Actor(id="ann"))
        with audit_context() as scope:
            assert scope.actor == Actor(id="ann")
            assert ctx.in_request() is False
    finally:
        unbind(token)
