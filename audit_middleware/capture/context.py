"""Per-request audit context, held in a ContextVar.

The middleware binds a ``RequestContext`` for each request; ``record()``, the structlog
processors and the framework adapters read it. ContextVars keep it isolated across
threads and asyncio tasks. Raw header values are stored as received and derived values
(client IP, request id, trace id, truncated user agent) are computed on first use, so a
request that never produces a record or log line pays almost nothing.
"""

from __future__ import annotations

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
from audit_middleware.model.event import Actor, AuditEvent, RequestFacts, Scope

_UNSET: Any = object()


@dataclass(slots=True)
class PendingRecord:
    """A record made during a request, completed when the response is known."""

    event: AuditEvent
    outcome_given: bool
    actor_given: bool


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
    tenant: Scope | None = None
    project: Scope | None = None
    native_request: Any = None
    status_code: int | None = None
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
            self._request_id = valid_request_id(self.request_id_raw) or new_request_id()
        return self._request_id

    @property
    def trace_id(self) -> str | None:
        """The W3C trace id from ``traceparent``, if valid."""
        if self._trace_id is _UNSET:
            self._trace_id = trace_id_from_traceparent(self.traceparent)
        result: str | None = self._trace_id
        return result

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
        )


_current: ContextVar[RequestContext | None] = ContextVar("audit_middleware_request", default=None)


def current() -> RequestContext | None:
    """The context of the request being handled, or None outside a request."""
    return _current.get()


def bind(context: RequestContext | None) -> Token[RequestContext | None]:
    """Make ``context`` current; hand the token back to ``unbind``."""
    return _current.set(context)


def unbind(token: Token[RequestContext | None]) -> None:
    """Restore the context that was current before ``bind``.

    A token from another Context (a server that closes the response on another thread or
    task) cannot be reset; the current value is then cleared instead, so nothing leaks.
    """
    try:
        _current.reset(token)
    except ValueError:
        _current.set(None)


def set_actor(actor: Actor | None) -> None:
    """Hand the authenticated actor to the current request (e.g. from a FastAPI dependency)."""
    context = _current.get()
    if context is not None:
        context.actor = actor


def set_tenant(tenant: Scope | str | None, project: Scope | str | None = _UNSET) -> None:
    """Set the current request's tenant (organization), and optionally its project."""
    context = _current.get()
    if context is not None:
        context.tenant = Scope.of(tenant)
        if project is not _UNSET:
            context.project = Scope.of(project)


def set_project(project: Scope | str | None) -> None:
    """Set the current request's project."""
    context = _current.get()
    if context is not None:
        context.project = Scope.of(project)


def set_route(route: str | None) -> None:
    """Record the route template that matched (adapters call this)."""
    context = _current.get()
    if context is not None:
        context.route = route


def audit_this_request(enabled: bool = True) -> None:
    """Force (or, with False, suppress) the automatic record of the current request."""
    context = _current.get()
    if context is not None:
        context.force_audit = enabled
        context.skip_audit = not enabled
