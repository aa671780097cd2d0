"""Per-request audit context, held in a ContextVar, and the context of work outside requests.

The middleware binds a ``LazyContext`` for each request: a copy of the environ or scope,
from which the ``RequestContext`` is built the first time something asks for it
(``current()``: ``record()``, ``set_actor()``, an ORM change, ``audit_context()``, a log
line through ``add_audit_context``, an adapter's hand-over). A request that may be
audited by its method and that nothing asks about is built on the background worker
from those raw values (``capture.derive.RawRequestJob``); one that may not be audited,
and whose app never asks, ends without a context at all.
ContextVars keep both isolated across threads and asyncio tasks. Raw header values are
stored as received and derived values (client IP, request id, trace id, truncated user
agent) are computed on first use: for a record, on the background worker
(``capture.derive``).

Jobs, scripts, management commands and tasks have no request: ``audit_context()`` says
who acts there (an ``AmbientContext``), and what they record carries it.

The module is long because the request's context, its lazy stand-in, the ambient context
and the functions that set them share one ContextVar each: split, they would import
each other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

from audit_middleware.capture.changes import ChangeLog
from audit_middleware.capture.clientip import ProxyTrust, ResolvedIP, resolve_client_ip
from audit_middleware.capture.headers import (
    new_request_id,
    trace_id_from_traceparent,
    truncate_user_agent,
    valid_request_id,
)
from audit_middleware.capture.settings import CaptureSettings
from audit_middleware.capture.tracing import active_span
from audit_middleware.errors import AuditError
from audit_middleware.model.event import Actor, AuditEvent, RequestFacts, Scope

_UNSET: Any = object()
_derive_lock = threading.Lock()
_open_lock = threading.Lock()


@dataclass(slots=True)
class PendingRecord:
    """A record made during a request, completed when the response is known.

    ``source`` is ``"app"`` for ``record()`` and ``"detected"`` for what a framework
    adapter saw (a login signal); the app's own record of an action wins over a detected one.
    """

    event: AuditEvent
    outcome_given: bool
    actor_given: bool
    source: str = "app"


@dataclass(slots=True, eq=False)
class RequestContext:
    """What one request tells about its audit events. Created by the middleware."""

    method: str
    path: str
    peer: str | None = None
    x_forwarded_for: str | None = None
    forwarded: str | None = None
    user_agent_raw: str | None = None
    request_id_raw: str | None = None
    traceparent: str | None = None
    trust: ProxyTrust = field(default_factory=ProxyTrust)
    user_agent_limit: int = 512
    # set by adapters or app code while the request runs
    route: str | None = None
    actor: Actor | None = None
    # how the framework adapter finds the user now (flask-login, request.user), if it can
    actor_lookup: Callable[[], Actor | None] | None = None
    tenant: Scope | None = None
    project: Scope | None = None
    native_request: Any = None
    status_code: int | None = None
    # a redirect's Location, and the app's login page (adapters know it), for the outcome rules
    location: str | None = None
    login_path: str | None = None
    # why the framework refused the request (flask-login's unauthorized), if it did
    denied: str | None = None
    force_audit: bool = False
    skip_audit: bool = False
    explicit: list[PendingRecord] = field(default_factory=list)
    # committed changes of registered models (created on the first one)
    changes: ChangeLog | None = None
    # set when the request's records have been sent: a later record() is sent at once
    finished: bool = False
    _client: ResolvedIP | None = None
    _request_id: str | None = None
    _trace_id: Any = _UNSET
    _user_agent: Any = _UNSET
    _span: tuple[str, str] | None = None

    @property
    def client(self) -> ResolvedIP:
        """The client address, trusting forwarded headers only from configured proxies."""
        if self._client is None:
            self._client = resolve_client_ip(self.peer, self.x_forwarded_for, self.forwarded, self.trust)
        return self._client

    @property
    def request_id(self) -> str:
        """The incoming X-Request-ID when well-formed, else a new id (stable for the request)."""
        if self._request_id is None:
            # the worker derives it while a late record() (a commit after the response) may too
            with _derive_lock:
                if self._request_id is None:
                    self._request_id = valid_request_id(self.request_id_raw) or new_request_id()
        return self._request_id

    @property
    def trace_id(self) -> str | None:
        """The trace id of the request's OpenTelemetry span, else the one of a valid ``traceparent``."""
        if self._span is not None:
            return self._span[0]
        if self._trace_id is _UNSET:
            self._trace_id = trace_id_from_traceparent(self.traceparent)
        result: str | None = self._trace_id
        return result

    @property
    def span_id(self) -> str | None:
        """The span id of the request's OpenTelemetry span, when one was active."""
        return None if self._span is None else self._span[1]

    def note_span(self) -> None:
        """Keep the active OpenTelemetry span's ids (the first one seen while the app runs)."""
        if self._span is None:
            self._span = active_span()

    @property
    def user_agent(self) -> str | None:
        """The user agent, truncated with a marker past the configured limit."""
        if self._user_agent is _UNSET:
            self._user_agent = truncate_user_agent(self.user_agent_raw, self.user_agent_limit)
        result: str | None = self._user_agent
        return result

    def facts(self) -> RequestFacts:
        """The request's part of an audit record."""
        client = self.client
        return RequestFacts(
            method=self.method,
            path=self.path,
            route=self.route,
            request_id=self.request_id,
            status_code=self.status_code,
            client_ip=client.ip,
            forwarded_chain=client.chain,
            user_agent=self.user_agent,
            trace_id=self.trace_id,
            span_id=self.span_id,
        )


class LazyContext:
    """What a middleware binds for a request until something needs its :class:`RequestContext`.

    The middleware's subclass keeps the request as the server handed it over (``kept``: a
    copy of the environ or scope, so an inner middleware rewriting it changes nothing)
    and the raw response start; :meth:`open` builds the context from them on first use, on
    whichever thread asks, and applies what the request has seen so far: the response
    start, its end (a context opened after the request answered is ``finished``, so its
    records are sent at once, as for any late ``record()``) and the adapters' hooks
    (:func:`when_open`). The worker opens it for a request that ended with no context
    (``kept`` is the middleware's own copy, so reading it there races with nothing).
    """

    __slots__ = (
        "audited",
        "complete",
        "config",
        "context",
        "failed",
        "finished",
        "handed",
        "headers",
        "hooks",
        "kept",
        "native",
        "span",
        "status",
    )

    def __init__(self, native: Any, kept: Any, config: CaptureSettings, audited: bool = False) -> None:
        self.native = native  # the server's environ or scope, handed to the resolvers
        self.kept = kept  # what the context is read from: a copy, taken when the request came in
        self.config = config
        # its method may be audited: the first thing that touches the context builds it, on
        # this thread; if nothing does, the worker builds it from ``kept`` (capture.derive)
        self.audited = audited
        self.span: tuple[str, str] | None = None  # the OpenTelemetry span seen when the response began
        self.context: RequestContext | None = None
        # the raw response start (status, headers) in the middleware's own form
        self.status: Any = None
        self.headers: Any = None
        self.finished = False
        self.failed = False
        # an adapter saw the whole response body (not a stream): it may end the request
        # when the framework does, before the server closes the body
        self.complete = False
        # adapters' hand-overs: ``hooks`` read the framework's request (run on the request
        # thread only), ``handed`` only write values they hold (run wherever it is built)
        self.hooks: list[Callable[[RequestContext], None]] | None = None
        self.handed: list[Callable[[RequestContext], None]] | None = None

    def build(self) -> RequestContext:
        """The request's context, read from what the subclass kept."""
        raise NotImplementedError

    def apply_start(self, context: RequestContext) -> None:
        """Put the kept response start (status, redirect target) on ``context``."""
        raise NotImplementedError

    def open(self) -> RequestContext:
        """The request's context, built now if nothing has asked before."""
        context = self.context
        if context is not None:
            return context
        with _open_lock:  # two threads of one request asking at once get one context
            context = self.context
            if context is not None:
                return context
            context = self.build()
            # Everything the request has seen goes on before the context is published: a
            # thread that finds it (a late record(), the worker) sees it whole. The hooks
            # are adapters' value hand-overs; none of them asks for the context again.
            self._apply_seen(context)
            for hook in self.hooks or ():
                hook(context)
            for hook in self.handed or ():
                hook(context)
            self.context = context
        # The middleware writes the raw value first and reads ``context`` after: what it
        # wrote while the context was being built is applied again now (idempotent).
        self._apply_seen(context)
        return context

    def _apply_seen(self, context: RequestContext) -> None:
        if self.status is not None:
            self.apply_start(context)
        if self.span is not None and context._span is None:
            context._span = self.span
        if self.finished:
            if self.failed and (context.status_code is None or context.status_code < 500):
                context.status_code = 500
            context.finished = True

    def when_open(self, hook: Callable[[RequestContext], None]) -> RequestContext | None:
        """Keep ``hook`` for when the context is built; if it is already, return it instead.

        A request that may be audited is built now: what an adapter hands over (its request,
        the user lookup) is then read on the request thread, never on the worker. Hooks kept
        for later (and a middleware's ``on_open``) run only where the request thread builds
        the context: they are dropped when the request is handed to the worker raw, and an
        adapter hands its findings over as values instead (:meth:`hand_over`).
        """
        if self.audited:
            return self.context or self.open()
        return self._keep(hook, handed=False)

    def hand_over(self, hook: Callable[[RequestContext], None]) -> None:
        """Run ``hook`` on the context when it is built, on whichever thread builds it (the
        worker, for a request handed over raw); now, if it is built already.

        The hook must only write values it holds (a route, an actor found on the request
        thread): it may run after the request, where no framework object may be read.
        """
        context = self._keep(hook, handed=True)
        if context is not None:
            hook(context)

    def _keep(self, hook: Callable[[RequestContext], None], *, handed: bool) -> RequestContext | None:
        with _open_lock:
            if self.context is not None:
                return self.context
            if handed:
                if self.handed is None:
                    self.handed = []
                self.handed.append(hook)
            else:
                if self.hooks is None:
                    self.hooks = []
                self.hooks.append(hook)
            return None

    def drop_thread_hooks(self) -> None:
        """Forget the hooks that read the framework's request: the request is handed to the
        worker raw, and they must not run there."""
        self.hooks = None

    def end(self, *, failed: bool) -> RequestContext | None:
        """The request has ended: its context if one was opened (to finish), else None."""
        self.failed = failed
        self.finished = True  # before reading ``context``: see ``open``
        return self.context


Bound = RequestContext | LazyContext | None
_current: ContextVar[Bound] = ContextVar("audit_middleware_request", default=None)


def current() -> RequestContext | None:
    """The context of the request being handled (built now if nothing asked before), or None."""
    value = _current.get()
    if isinstance(value, LazyContext):
        return value.context or value.open()
    return value


def opened() -> RequestContext | None:
    """The current request's context if it has been built, else None; never builds it."""
    value = _current.get()
    return value.context if isinstance(value, LazyContext) else value


def lazy_request() -> LazyContext | None:
    """What a middleware bound for the current request (its context may not be built yet),
    or None: framework adapters hand it values (:meth:`LazyContext.hand_over`) rather than
    build a context on the request thread."""
    value = _current.get()
    return value if isinstance(value, LazyContext) else None


def in_request() -> bool:
    """Whether a request is being handled (outside ``audit_context()``); never builds its context."""
    return _current.get() is not None


def when_open(hook: Callable[[RequestContext], None]) -> bool:
    """Run ``hook`` on the current request's context: now if it is built, else when it is.

    Framework adapters hand over what they know (their request object, the route) without
    building a context no record may need. False outside a request.
    """
    value = _current.get()
    if value is None:
        return False
    if isinstance(value, LazyContext):
        context = value.when_open(hook)
        if context is not None:
            hook(context)
    else:
        hook(value)
    return True


bind: Callable[[Bound], Token[Bound]] = _current.set
"""Make a context current; hand the token back to ``unbind`` (the ContextVar's own ``set``:
the response iterable binds for each chunk, and a Python call per chunk shows)."""


unbind_here: Callable[[Token[Bound]], None] = _current.reset
"""``unbind`` for a token bound earlier in the same call, with no ``await`` or ``yield``
between (a chunk of a response body): no other Context can hold it, so no fallback."""


def unbind(token: Token[Bound]) -> None:
    """Restore the context that was current before ``bind``.

    A token from another Context (a server that closes the response on another thread or
    task) cannot be reset; the current value is then cleared instead, so nothing leaks.
    """
    try:
        _current.reset(token)
    except ValueError:
        _current.set(None)


@dataclass(slots=True)
class AmbientContext:
    """Who acts, for which tenant and project, in work outside a request (see :func:`audit_context`).

    ``request_id``, ``trace_id`` and ``span_id`` tie that work to the request that started
    it (a task queued by a request carries them).
    """

    actor: Actor | None = None
    tenant: Scope | None = None
    project: Scope | None = None
    request_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None

    def facts(self) -> RequestFacts | None:
        """The request ids to put on a record, or None when there are none."""
        trace_id, span_id = self.trace_id, self.span_id
        if trace_id is None:
            span = active_span()
            if span is not None:
                trace_id, span_id = span
        if self.request_id is None and trace_id is None:
            return None
        return RequestFacts(request_id=self.request_id, trace_id=trace_id, span_id=span_id)


_ambient: ContextVar[AmbientContext | None] = ContextVar("audit_middleware_ambient", default=None)


def ambient() -> AmbientContext | None:
    """The :func:`audit_context` in force, or None."""
    return _ambient.get()


@contextmanager
def audit_context(
    *,
    actor: Actor | None = _UNSET,
    tenant: Scope | str | None = _UNSET,
    project: Scope | str | None = _UNSET,
    request_id: str | None = _UNSET,
    trace_id: str | None = _UNSET,
    span_id: str | None = _UNSET,
) -> Iterator[AmbientContext]:
    """Say who acts in a job, script, management command or task; what it records carries it.

    Records made inside (``record()``, changes of registered models) name this actor,
    tenant and project unless they name their own; without an actor they are by
    ``system``. Nested contexts inherit what they do not set. Inside a request the block
    is a scope of its own: its records are separate from the request's, and start from
    the request's actor, tenant, project, request id and trace id.

    >>> from audit_middleware import Actor, audit_context, record
    >>> with audit_context(actor=Actor(id="cron", kind="service"), tenant="acme"):
    ...     pass  # record("delete", resource=...) here is by cron, in acme
    """
    outer = _ambient.get()
    request = current()
    base = outer or (_from_request(request) if request is not None else AmbientContext())
    scope = AmbientContext(
        actor=base.actor if actor is _UNSET else actor,
        tenant=base.tenant if tenant is _UNSET else Scope.of(tenant),
        project=base.project if project is _UNSET else Scope.of(project),
        request_id=base.request_id if request_id is _UNSET else request_id,
        trace_id=base.trace_id if trace_id is _UNSET else trace_id,
        span_id=base.span_id if span_id is _UNSET else span_id,
    )
    token = _ambient.set(scope)
    request_token = _current.set(None)
    try:
        yield scope
    finally:
        _current.reset(request_token)
        _ambient.reset(token)


def _from_request(context: RequestContext) -> AmbientContext:
    return AmbientContext(
        actor=context.actor,
        tenant=context.tenant,
        project=context.project,
        request_id=context.request_id,
        trace_id=context.trace_id,
        span_id=context.span_id,
    )


def _outside_error(name: str) -> AuditError:
    return AuditError(
        f"{name}() was called outside a request and outside audit_context(): wrap the work in "
        f"`with audit_context(...)` (or pass the value to record())"
    )


def set_actor(actor: Actor | None) -> None:
    """Hand the authenticated actor to the current request (e.g. from a FastAPI dependency),
    or to the :func:`audit_context` in force; raises ``AuditError`` outside both.

    A request's context is not built for it: the actor waits for the first thing that needs it.
    """

    def hand_over(target: RequestContext | AmbientContext) -> None:
        target.actor = actor

    _hand_over(hand_over, "set_actor")


def set_tenant(tenant: Scope | str | None, project: Scope | str | None = _UNSET) -> None:
    """Set the tenant (organization), and optionally the project, of the current request or
    :func:`audit_context`; raises ``AuditError`` outside both."""
    tenant_scope = Scope.of(tenant)
    project_scope = project if project is _UNSET else Scope.of(project)

    def hand_over(target: RequestContext | AmbientContext) -> None:
        target.tenant = tenant_scope
        if project_scope is not _UNSET:
            target.project = project_scope

    _hand_over(hand_over, "set_tenant")


def set_project(project: Scope | str | None) -> None:
    """Set the project of the current request or :func:`audit_context`; raises outside both."""
    project_scope = Scope.of(project)

    def hand_over(target: RequestContext | AmbientContext) -> None:
        target.project = project_scope

    _hand_over(hand_over, "set_project")


def _hand_over(hand_over: Callable[[RequestContext | AmbientContext], None], name: str) -> None:
    if when_open(hand_over):
        return
    scope = _ambient.get()
    if scope is None:
        raise _outside_error(name)
    hand_over(scope)


def set_route(route: str | None) -> None:
    """Record the route template that matched (adapters call this; builds no context)."""

    def note(context: RequestContext) -> None:
        context.route = route

    when_open(note)


def audit_this_request(enabled: bool = True) -> None:
    """Force (or, with False, suppress) the automatic record of the current request."""
    context = current()
    if context is not None:
        context.force_audit = enabled
        context.skip_audit = not enabled
