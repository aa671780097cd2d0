"""Completing a record: who acted, in which tenant and project, with which request facts.

Shared by the recorder (requests, explicit records) and the staging of ORM changes. An
app's resolver that raises costs the value it resolves, never the record.
"""

from __future__ import annotations

from audit_middleware import logs
from audit_middleware.capture.active import current_settings
from audit_middleware.capture.change_records import Description
from audit_middleware.capture.context import AmbientContext, PendingRecord, RequestContext
from audit_middleware.capture.rules import generic_action
from audit_middleware.capture.settings import CaptureSettings
from audit_middleware.capture.tracing import active_span
from audit_middleware.model.actions import CATALOG, Action
from audit_middleware.model.event import Actor, AuditEvent, RequestFacts, Scope

__all__ = [
    "ANONYMOUS",
    "action_for",
    "apply",
    "complete",
    "complete_outside",
    "current_settings",
    "failed_status",
    "resolve_actor",
    "resolve_scope",
    "send",
]

ANONYMOUS = Actor(name="anonymous")


def complete(
    pending: PendingRecord,
    context: RequestContext,
    config: CaptureSettings,
    facts: RequestFacts,
    failure: bool,
) -> AuditEvent:
    event = pending.event
    if not pending.actor_given:
        event.actor = resolve_actor(context, config)
    if not pending.outcome_given and failure:
        event.outcome = "failure"
    if event.tenant is None:
        event.tenant = resolve_scope(context, config, "tenant")
    if event.project is None:
        event.project = resolve_scope(context, config, "project")
    event.request = facts
    return event


def resolve_actor(context: RequestContext, config: CaptureSettings) -> Actor:
    """The request's actor: handed over, else found by the adapter or the app's resolver, else anonymous."""
    if context.actor is not None:
        return context.actor
    lookup = context.actor_lookup
    if lookup is not None:
        found = lookup()  # the adapter's own lookup (flask-login, request.user), guarded there
        if found is not None:
            context.actor = found
            return found
    resolver = config.actor_resolver
    if resolver is not None and context.native_request is not None:
        try:
            actor = resolver(context.native_request)
        except Exception as exc:  # noqa: BLE001 - an app's resolver bug must not cost the record
            logs.warn(f"actor resolver raised {type(exc).__name__}: {exc}")
            return Actor(name="unresolved")
        if actor is not None:
            context.actor = actor
            return actor
    return ANONYMOUS


def resolve_scope(context: RequestContext, config: CaptureSettings, which: str) -> Scope | None:
    value: Scope | None = getattr(context, which)
    if value is not None:
        return value
    resolver = config.tenant_resolver if which == "tenant" else config.project_resolver
    if resolver is None or context.native_request is None:
        return None
    try:
        resolved = Scope.of(resolver(context.native_request))
    except Exception as exc:  # noqa: BLE001 - see _actor
        logs.warn(f"{which} resolver raised {type(exc).__name__}: {exc}")
        return None
    setattr(context, which, resolved)
    return resolved


def send(event: AuditEvent, settings: CaptureSettings, *, strict: bool = False) -> None:
    """Hand the finished record on (processing and the sink are behind ``deliver``).

    ``strict``: a durable sink's refusal raises ``AuditDeliveryError`` (outside a request).
    """
    if settings.service_name and event.service is None:
        event.service = settings.service_name
    settings.deliver(event, strict=strict)


def failed_status(context: RequestContext) -> bool:
    status = context.status_code
    return status is not None and status >= 400


def action_for(action_id: str, method: str | None) -> Action:
    if action_id in CATALOG:
        return CATALOG.get(action_id)
    # a rule naming an action nobody registered: keep the record, with the generic action
    logs.warn(f"audit rule action {action_id!r} is not registered; recording a generic action")
    return CATALOG.get(generic_action(method or "POST"))


def apply(event: AuditEvent, description: Description) -> None:
    event.resource = description.resource
    event.targets = description.targets
    event.changes = description.changes
    if description.details:
        event.details = {**description.details, **event.details}


def complete_outside(event: AuditEvent, scope: AmbientContext | None, *, actor_given: bool) -> None:
    """Complete a record made outside a request from the ``audit_context()`` in force."""
    if scope is None:
        span = active_span()
        if span is not None:
            event.request = RequestFacts(trace_id=span[0], span_id=span[1])
        return
    if not actor_given and scope.actor is not None:
        event.actor = scope.actor
    if event.tenant is None:
        event.tenant = scope.tenant
    if event.project is None:
        event.project = scope.project
    event.request = scope.facts()
