"""Turning actions into finished audit records and handing them to the sink.

``record()`` works inside a request (the record is completed when the response is known:
status, outcome, late-resolved actor) and outside one (background jobs, scripts: the
record is emitted at once, by the ``system`` actor unless one is given).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from audit_middleware import logs
from audit_middleware.capture.active import current_settings
from audit_middleware.capture.context import PendingRecord, RequestContext, current
from audit_middleware.capture.rules import generic_action
from audit_middleware.capture.settings import CaptureSettings
from audit_middleware.errors import AuditValidationError
from audit_middleware.model.actions import CATALOG, Action
from audit_middleware.model.changes import diff
from audit_middleware.model.event import (
    OUTCOMES,
    SYSTEM_ACTOR,
    Actor,
    AuditEvent,
    ChangeSet,
    Outcome,
    PermissionChange,
    RequestFacts,
    Resource,
    Scope,
)
from audit_middleware.model.ids import uuid7

ANONYMOUS = Actor(name="anonymous")


def record(
    action: Action | str,
    *,
    resource: Resource | None = None,
    targets: Iterable[Resource] | None = None,
    changes: ChangeSet | tuple[Mapping[str, Any] | None, Mapping[str, Any] | None] | None = None,
    details: Mapping[str, Any] | None = None,
    outcome: Outcome | None = None,
    actor: Actor | None = None,
    tenant: Scope | str | None = None,
    project: Scope | str | None = None,
    permissions: PermissionChange | None = None,
) -> AuditEvent:
    """Record an audit event and return it.

    Inside a request this record replaces the middleware's automatic one, and is sent
    when the response is known. ``outcome`` defaults to the action's usual outcome, or
    ``"failure"`` when the request fails. ``changes`` takes ``diff(before, after)`` or
    a ``(before, after)`` pair. ``permissions`` names the roles a Permissions Changed
    record granted and revoked; without it they are derived from a change of ``roles``
    (``changes=diff({"roles": old}, {"roles": new})``).

    Outside a request the record is delivered at once: with a durable sink that cannot
    keep it (a full disk), ``AuditDeliveryError`` is raised and the record is not kept.
    Inside a request it is delivered when the response closes, which never raises.

    >>> from audit_middleware import Resource, record
    >>> event = record("restart", resource=Resource("pod", "web-1"))  # doctest: +SKIP
    """
    resolved = CATALOG.resolve(action)
    if outcome is not None and outcome not in OUTCOMES:
        raise AuditValidationError(f"outcome {outcome!r} must be one of {sorted(OUTCOMES)}")
    if details is not None and not isinstance(details, Mapping):
        raise AuditValidationError("details must be a mapping")
    if resource is not None and not isinstance(resource, Resource):
        raise AuditValidationError("resource must be an audit_middleware.Resource")
    target_list = tuple(targets or ())
    if any(not isinstance(t, Resource) for t in target_list):
        raise AuditValidationError("targets must be audit_middleware.Resource objects")
    if changes is not None and not isinstance(changes, ChangeSet | tuple):
        # caught here, not when the sink reads it later and the record is gone
        raise AuditValidationError("changes must be diff(before, after) or a (before, after) pair")
    change_set = diff(*changes) if isinstance(changes, tuple) else changes
    if permissions is not None and not isinstance(permissions, PermissionChange):
        raise AuditValidationError("permissions must be an audit_middleware.PermissionChange")
    unix_ms = time.time_ns() // 1_000_000
    event = AuditEvent(
        id=uuid7(unix_ms),
        unix_ms=unix_ms,
        action=resolved,
        actor=actor or SYSTEM_ACTOR,
        outcome=outcome or resolved.default_outcome,  # type: ignore[arg-type]
        resource=resource,
        targets=target_list,
        changes=change_set,
        details=dict(details) if details else {},
        tenant=Scope.of(tenant),
        project=Scope.of(project),
        permissions=permissions,
    )
    context = current()
    settings = current_settings()
    if context is None:
        _send(event, settings, strict=True)  # a durable sink's refusal reaches the caller
        return event
    pending = PendingRecord(event, outcome is not None, actor is not None)
    if context.finished:
        # e.g. a task spawned by the request that outlives it: the request's records are
        # already sent, so complete this one now rather than lose it
        _send(_complete(pending, context, settings, context.facts(), _failed(context)), settings, strict=True)
    else:
        context.explicit.append(pending)
    return event


def finish_request(context: RequestContext, *, failed: bool = False) -> None:
    """Complete and send the request's records; called once by the middleware at the end.

    ``failed`` is True when the app raised or the response broke off; a status of 400
    or more also counts as failure.
    """
    if context.finished:
        return
    context.finished = True
    try:
        _finish_request(context, failed=failed)
    except Exception as exc:  # noqa: BLE001 - auditing must never break the host app's response
        _warn(f"audit record of {context.method} {context.path[:200]} could not be built: {exc!r}")


def _failed(context: RequestContext) -> bool:
    status = context.status_code
    return status is not None and status >= 400


def _finish_request(context: RequestContext, *, failed: bool) -> None:
    config = current_settings()
    status = context.status_code
    if failed and (status is None or status < 500):
        context.status_code = 500
    failure = failed or _failed(context)
    if context.explicit:
        facts = context.facts()
        for pending in context.explicit:
            _send(_complete(pending, context, config, facts, failure), config)
        context.explicit.clear()
        return
    if context.skip_audit:
        return
    method = context.method
    if not (context.force_audit or method in config.audit_methods or method in config.rules.methods):
        return
    decision = config.rules.decide(
        method, context.path, context.route, generic_methods=config.audit_methods, force=context.force_audit
    )
    if decision is None:
        return
    if decision.action in CATALOG:
        action = CATALOG.get(decision.action)
    else:
        # a rule naming an action nobody registered: keep the record, with the generic action
        _warn(f"audit rule action {decision.action!r} is not registered; recording a generic action")
        action = CATALOG.get(generic_action(method))
    unix_ms = time.time_ns() // 1_000_000
    event = AuditEvent(
        id=uuid7(unix_ms),
        unix_ms=unix_ms,
        action=action,
        actor=_actor(context, config),
        outcome="failure" if failure else "success",
        resource=decision.resource,
        tenant=_scope(context, config, "tenant"),
        project=_scope(context, config, "project"),
        request=context.facts(),
    )
    _send(event, config)


def may_record(context: RequestContext, config: CaptureSettings | None = None) -> bool:
    """Whether the request can produce a record, so resolving its actor is worth the cost.

    Framework adapters ask before touching a lazy user (Django's ``request.user`` costs
    a session and a user query, and marks the response ``Vary: Cookie``).
    """
    config = config or current_settings()
    method = context.method
    wanted = context.explicit or context.force_audit
    return bool(wanted) or method in config.audit_methods or method in config.rules.methods


def resolve_late(context: RequestContext) -> None:
    """Resolve actor, tenant and project while the framework's request is still alive.

    Middlewares call this when the response starts: the app's authentication has run,
    and (unlike at close time) a framework's request-scoped user is still reachable.
    """
    config = current_settings()
    if may_record(context, config):
        _actor(context, config)
        _scope(context, config, "tenant")
        _scope(context, config, "project")


def _complete(
    pending: PendingRecord,
    context: RequestContext,
    config: CaptureSettings,
    facts: RequestFacts,
    failure: bool,
) -> AuditEvent:
    event = pending.event
    if not pending.actor_given:
        event.actor = _actor(context, config)
    if not pending.outcome_given and failure:
        event.outcome = "failure"
    if event.tenant is None:
        event.tenant = _scope(context, config, "tenant")
    if event.project is None:
        event.project = _scope(context, config, "project")
    event.request = facts
    return event


def _actor(context: RequestContext, config: CaptureSettings) -> Actor:
    if context.actor is not None:
        return context.actor
    resolver = config.actor_resolver
    if resolver is not None and context.native_request is not None:
        try:
            actor = resolver(context.native_request)
        except Exception as exc:  # noqa: BLE001 - an app's resolver bug must not cost the record
            _warn(f"actor resolver raised {type(exc).__name__}: {exc}")
            return Actor(name="unresolved")
        if actor is not None:
            context.actor = actor
            return actor
    return ANONYMOUS


def _scope(context: RequestContext, config: CaptureSettings, which: str) -> Scope | None:
    value: Scope | None = getattr(context, which)
    if value is not None:
        return value
    resolver = config.tenant_resolver if which == "tenant" else config.project_resolver
    if resolver is None or context.native_request is None:
        return None
    try:
        resolved = Scope.of(resolver(context.native_request))
    except Exception as exc:  # noqa: BLE001 - see _actor
        _warn(f"{which} resolver raised {type(exc).__name__}: {exc}")
        return None
    setattr(context, which, resolved)
    return resolved


def _send(event: AuditEvent, settings: CaptureSettings, *, strict: bool = False) -> None:
    """Hand the finished record on (processing and the sink are behind ``deliver``)."""
    if settings.service_name and event.service is None:
        event.service = settings.service_name
    settings.deliver(event, strict=strict)


def _warn(message: str) -> None:
    logs.warn(message)
