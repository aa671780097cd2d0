"""Turning actions into finished audit records and handing them to the sink.

``record()`` works inside a request (the record is completed when the response is known:
status, outcome, late-resolved actor) and outside one (background jobs, scripts: the
record is emitted at once, by the actor of the ``audit_context()`` in force, else by
``system``, unless one is given).

At the end of a request :func:`finish_request` builds its record by precedence:
explicit ``record()`` calls, else a route rule's action (enriched with the committed
changes of registered models, see ``capture.staging``), else the changes themselves,
else the generic record of a state-changing method.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from audit_middleware import logs
from audit_middleware.capture.change_records import Description, describe
from audit_middleware.capture.changes import REGISTRY, ChangeLog, settle
from audit_middleware.capture.completion import (
    ANONYMOUS,
    action_for,
    apply,
    complete,
    complete_outside,
    current_settings,
    failed_status,
    resolve_actor,
    resolve_scope,
    send,
)
from audit_middleware.capture.context import PendingRecord, RequestContext, ambient, current
from audit_middleware.capture.outcomes import Verdict, judge
from audit_middleware.capture.rules import Decision
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
    Resource,
    Scope,
)
from audit_middleware.model.ids import uuid7

__all__ = ["finish_request", "may_record", "record", "record_detected", "resolve_late"]


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
        complete_outside(event, ambient(), actor_given=actor is not None)
        send(event, settings, strict=True)  # a durable sink's refusal reaches the caller
        return event
    context.note_span()
    pending = PendingRecord(event, outcome is not None, actor is not None)
    if context.finished:
        # e.g. a task spawned by the request that outlives it: the request's records are
        # already sent, so complete this one now rather than lose it
        send(
            complete(pending, context, settings, context.facts(), failed_status(context)),
            settings,
            strict=True,
        )
    else:
        context.explicit.append(pending)
    return event


def record_detected(
    action: Action | str,
    *,
    resource: Resource | None = None,
    details: Mapping[str, Any] | None = None,
    actor: Actor | None = None,
    tenant: Scope | str | None = None,
) -> AuditEvent:
    """``record()`` for what a framework adapter saw (a login signal, for example).

    It stands in the request like an explicit record, except that the app's own record of
    the same action in the same request wins: an app that records its logins itself
    never gets two.
    """
    event = record(action, resource=resource, details=details, actor=actor, tenant=tenant)
    context = current()
    if context is not None and context.explicit and context.explicit[-1].event is event:
        context.explicit[-1].source = "detected"
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
        logs.warn(f"audit record of {context.method} {context.path[:200]} could not be built: {exc!r}")


def _finish_request(context: RequestContext, *, failed: bool) -> None:
    config = current_settings()
    status = context.status_code
    if failed and (status is None or status < 500):
        context.status_code = 500
    failure = failed or failed_status(context)
    settle()
    changes = context.changes
    if context.explicit:
        _send_explicit(context, config, changes, failure)
        return
    if context.skip_audit:
        return
    method = context.method
    if not (
        changes or context.force_audit or method in config.audit_methods or method in config.rules.methods
    ):
        return
    decision = config.rules.decide(
        method,
        context.path,
        context.route,
        generic_methods=config.audit_methods,
        force=context.force_audit or bool(changes),
    )
    if decision is None:
        return
    outcome: Outcome = "failure" if failure else "success"
    if changes:
        for description in _request_changes(context, config, decision, changes):
            send(_request_event(context, config, description, outcome), config)
        return
    reason = context.denied
    honest = config.honest_outcomes
    if decision.rule is None and (reason is not None or (REGISTRY.active if honest is None else honest)):
        # the generic record may claim only what the response shows (else: the status decides)
        verdict = _judge(context, config, failure)
        if not verdict.audit:
            return
        outcome, reason = verdict.outcome, verdict.reason
    elif reason is not None:
        outcome = "failure"
    event = _request_event(context, config, action_for(decision.action, method), outcome)
    event.resource = decision.resource
    if reason is not None:
        event.details = {"reason": reason}
    send(event, config)


def _honest(config: CaptureSettings) -> bool:
    honest = config.honest_outcomes
    return REGISTRY.active if honest is None else honest


def _judge(context: RequestContext, config: CaptureSettings, failure: bool) -> Verdict:
    status = context.status_code
    redirected = status is not None and 300 <= status < 400 and context.location is not None
    return judge(
        status=status,
        failed=failure,
        honest=_honest(config),
        path=context.path,
        location=context.location,
        denied=context.denied,
        anonymous=redirected and resolve_actor(context, config) is ANONYMOUS,
        login_paths=(*config.login_paths, context.login_path or ""),
    )


def _send_explicit(
    context: RequestContext, config: CaptureSettings, changes: ChangeLog | None, failure: bool
) -> None:
    """Explicit records win; one that names a changed row and no change gets the row's change."""
    rows = {row.key: row for row in changes.rows()} if changes else {}
    facts = context.facts()
    said_by_app = {pending.event.action.id for pending in context.explicit if pending.source == "app"}
    for pending in context.explicit:
        event = pending.event
        if pending.source != "app" and event.action.id in said_by_app:
            continue  # the app recorded this itself (a login, say): one operation, one entry
        if rows and event.changes is None and event.resource is not None:
            row = rows.get((event.resource.type, event.resource.id))
            if row is not None:
                event.changes = row.change_set()
        send(complete(pending, context, config, facts, failure), config)
    context.explicit.clear()


def _request_changes(
    context: RequestContext, config: CaptureSettings, decision: Decision, changes: ChangeLog
) -> Iterator[Description]:
    """The descriptions of a request's record(s) from its committed changes."""
    rows = changes.rows()
    rule = decision.rule
    if rule is None and config.change_records == "per_row":
        for row in rows:
            yield describe([row], total=1)
        return
    description = describe(rows, total=changes.total, path=context.path)
    if rule is None:
        yield description
        return
    # a rule names the operation: its action and resource, enriched with the changes
    resource = decision.resource or description.resource
    targets = description.targets
    changed = rows[0].resource
    if not targets and (resource.type, resource.id) == (changed.type, changed.id):
        resource = Resource(resource.type, resource.id, resource.name or changed.name)
    elif not targets:
        targets = (changed,)  # the row changed is named even when the rule names another resource
    yield Description(
        rule.action or description.action,
        resource,
        targets,
        description.changes,
        description.details,
    )


def _request_event(
    context: RequestContext, config: CaptureSettings, what: Description | Action, outcome: Outcome
) -> AuditEvent:
    """An automatic record of the request: the action (with the changes' parts), actor, scope."""
    unix_ms = time.time_ns() // 1_000_000
    event = AuditEvent(
        id=uuid7(unix_ms),
        unix_ms=unix_ms,
        action=what if isinstance(what, Action) else action_for(what.action, context.method),
        actor=resolve_actor(context, config),
        outcome=outcome,
        tenant=resolve_scope(context, config, "tenant"),
        project=resolve_scope(context, config, "project"),
        request=context.facts(),
    )
    if isinstance(what, Description):
        apply(event, what)
    return event


def may_record(context: RequestContext, config: CaptureSettings | None = None) -> bool:
    """Whether the request can produce a record, so resolving its actor is worth the cost.

    Framework adapters ask before touching a lazy user (Django's ``request.user`` costs
    a session and a user query, and marks the response ``Vary: Cookie``).
    """
    config = config or current_settings()
    method = context.method
    wanted = context.explicit or context.force_audit or context.changes
    return bool(wanted) or method in config.audit_methods or method in config.rules.methods


def resolve_late(context: RequestContext) -> None:
    """Resolve actor, tenant and project while the framework's request is still alive.

    Middlewares call this when the response starts: the app's authentication has run,
    and (unlike at close time) a framework's request-scoped user is still reachable.
    """
    config = current_settings()
    if may_record(context, config):
        context.note_span()
        resolve_actor(context, config)
        resolve_scope(context, config, "tenant")
        resolve_scope(context, config, "project")
