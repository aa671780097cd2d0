"""Turning actions into finished audit records and handing them to the sink.

``record()`` works inside a request (the record is completed when the response is known:
status, outcome, late-resolved actor) and outside one (background jobs, scripts: the
record is emitted at once, by the ``system`` actor unless one is given).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import structlog

from audit_middleware.actions import CATALOG, Action
from audit_middleware.changes import diff
from audit_middleware.config import AuditConfig, get_config
from audit_middleware.context import RequestContext, current
from audit_middleware.errors import AuditValidationError
from audit_middleware.ids import uuid7
from audit_middleware.rules import generic_action
from audit_middleware.schema import (
    OUTCOMES,
    SYSTEM_ACTOR,
    Actor,
    AuditEvent,
    ChangeSet,
    Outcome,
    RequestFacts,
    Resource,
    Scope,
)
from audit_middleware.serialization import dumps

ANONYMOUS = Actor(name="anonymous")


@dataclass(slots=True)
class PendingRecord:
    """A record made during a request, completed when the response is known."""

    event: AuditEvent
    outcome_given: bool
    actor_given: bool


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
) -> AuditEvent:
    """Record an audit event and return it.

    Inside a request this record replaces the middleware's automatic one, and is sent
    when the response is known. ``outcome`` defaults to the action's usual outcome, or
    ``"failure"`` when the request fails. ``changes`` takes ``diff(before, after)`` or
    a ``(before, after)`` pair.

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
    change_set = diff(*changes) if isinstance(changes, tuple) else changes
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
    )
    context = current()
    config = get_config()
    if context is None:
        emit(event, config)
        return event
    pending = PendingRecord(event, outcome is not None, actor is not None)
    if context.finished:
        # e.g. a task spawned by the request that outlives it: the request's records are
        # already sent, so complete this one now rather than lose it
        emit(_complete(pending, context, config, context.facts(), _failed(context)), config)
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
    config = get_config()
    status = context.status_code
    if failed and (status is None or status < 500):
        context.status_code = 500
    failure = failed or _failed(context)
    if context.explicit:
        facts = context.facts()
        for pending in context.explicit:
            emit(_complete(pending, context, config, facts, failure), config)
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
    emit(event, config)


def may_record(context: RequestContext, config: AuditConfig | None = None) -> bool:
    """Whether the request can produce a record, so resolving its actor is worth the cost.

    Framework adapters ask before touching a lazy user (Django's ``request.user`` costs
    a session and a user query, and marks the response ``Vary: Cookie``).
    """
    config = config or get_config()
    method = context.method
    wanted = context.explicit or context.force_audit
    return bool(wanted) or method in config.audit_methods or method in config.rules.methods


def resolve_late(context: RequestContext) -> None:
    """Resolve actor, tenant and project while the framework's request is still alive.

    Middlewares call this when the response starts: the app's authentication has run,
    and (unlike at close time) a framework's request-scoped user is still reachable.
    """
    config = get_config()
    if may_record(context, config):
        _actor(context, config)
        _scope(context, config, "tenant")
        _scope(context, config, "project")


def _complete(
    pending: PendingRecord, context: RequestContext, config: AuditConfig, facts: RequestFacts, failure: bool
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


def _actor(context: RequestContext, config: AuditConfig) -> Actor:
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


def _scope(context: RequestContext, config: AuditConfig, which: str) -> Scope | None:
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


def redact(event: AuditEvent, config: AuditConfig) -> AuditEvent:
    """Apply the configured redaction, before the record leaves the process."""
    redactor = config.redactor
    if event.changes is not None:
        before, after, fields = redactor.redact_changes(
            event.changes.before, event.changes.after, event.changes.fields
        )
        event.changes = ChangeSet(before, after, tuple(fields))
    if event.details:
        event.details = redactor.redact_mapping(event.details)
    if redactor.email_pseudonym_key is not None:
        event.actor = _pseudonymise(event.actor, redactor)
    if redactor.truncate_ips and event.request is not None and event.request.client_ip:
        event.request = replace(
            event.request,
            client_ip=redactor.ip(event.request.client_ip),
            forwarded_chain=tuple(redactor.ip(ip) or ip for ip in event.request.forwarded_chain),
        )
    return event


def _pseudonymise(actor: Actor, redactor: Any) -> Actor:
    impersonator = _pseudonymise(actor.impersonator, redactor) if actor.impersonator else None
    return replace(actor, email=redactor.email(actor.email), impersonator=impersonator)


def emit(event: AuditEvent, config: AuditConfig | None = None) -> None:
    """Redact and hand the event to the sink; never raises into the host app."""
    config = config or get_config()
    if config.service_name and event.service is None:
        event.service = config.service_name
    try:
        config.sink.emit(redact(event, config))
    except Exception as exc:  # noqa: BLE001 - the record must survive a broken sink
        _last_resort(event, exc)


def _last_resort(event: AuditEvent, exc: BaseException) -> None:
    # Better a record on stderr, where process supervisors keep it, than no record.
    try:
        line = dumps({"audit_middleware_undelivered": event.to_document(), "error": repr(exc)})
        sys.stderr.write(line.decode("utf-8") + "\n")
    except Exception:  # noqa: BLE001, S110 - nothing further can be done without raising into the app
        pass


def _warn(message: str) -> None:
    # a broken logging set-up must not break the host app either
    with contextlib.suppress(Exception):
        structlog.get_logger("audit_middleware").warning(message)
