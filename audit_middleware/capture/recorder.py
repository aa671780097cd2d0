"""Turning actions into finished audit records and handing them to the sink.

``record()`` works inside a request (the record is completed when the response is known:
status, outcome, late-resolved actor) and outside one (background jobs, scripts: the
record is emitted at once, by the ``system`` actor unless one is given).

ORM adapters hand over the changes of registered models with :func:`stage` (when the
rows are written) and :func:`commit` (when their transaction commits). At the end of a
request :func:`finish_request` builds its record by precedence: explicit ``record()``
calls, else a route rule's action (enriched with the committed changes), else the
changes themselves, else the generic record of a state-changing method.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from audit_middleware import logs
from audit_middleware.capture.active import current_settings
from audit_middleware.capture.change_records import Description, describe
from audit_middleware.capture.changes import ChangeGroup, ChangeLog, settle
from audit_middleware.capture.context import PendingRecord, RequestContext, current
from audit_middleware.capture.rules import Decision, generic_action
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
    settings = current_settings()
    if context is None:
        _send(event, settings)
        return event
    pending = PendingRecord(event, outcome is not None, actor is not None)
    if context.finished:
        # e.g. a task spawned by the request that outlives it: the request's records are
        # already sent, so complete this one now rather than lose it
        _send(_complete(pending, context, settings, context.facts(), _failed(context)), settings)
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
            _send(_request_event(context, config, description, outcome), config)
        return
    event = _request_event(context, config, _action(decision.action, method), outcome)
    event.resource = decision.resource
    _send(event, config)


def _send_explicit(
    context: RequestContext, config: CaptureSettings, changes: ChangeLog | None, failure: bool
) -> None:
    """Explicit records win; one that names a changed row and no change gets the row's change."""
    rows = {row.key: row for row in changes.rows()} if changes else {}
    facts = context.facts()
    for pending in context.explicit:
        event = pending.event
        if rows and event.changes is None and event.resource is not None:
            row = rows.get((event.resource.type, event.resource.id))
            if row is not None:
                event.changes = row.change_set()
        _send(_complete(pending, context, config, facts, failure), config)
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


def _action(action_id: str, method: str | None) -> Action:
    if action_id in CATALOG:
        return CATALOG.get(action_id)
    # a rule naming an action nobody registered: keep the record, with the generic action
    _warn(f"audit rule action {action_id!r} is not registered; recording a generic action")
    return CATALOG.get(generic_action(method or "POST"))


def _request_event(
    context: RequestContext, config: CaptureSettings, what: Description | Action, outcome: Outcome
) -> AuditEvent:
    """An automatic record of the request: the action (with the changes' parts), actor, scope."""
    unix_ms = time.time_ns() // 1_000_000
    event = AuditEvent(
        id=uuid7(unix_ms),
        unix_ms=unix_ms,
        action=what if isinstance(what, Action) else _action(what.action, context.method),
        actor=_actor(context, config),
        outcome=outcome,
        tenant=_scope(context, config, "tenant"),
        project=_scope(context, config, "project"),
        request=context.facts(),
    )
    if isinstance(what, Description):
        _describe_event(event, what)
    return event


def _describe_event(event: AuditEvent, description: Description) -> None:
    event.resource = description.resource
    event.targets = description.targets
    event.changes = description.changes
    if description.details:
        event.details = {**description.details, **event.details}


@dataclass(slots=True)
class StagedChanges:
    """The changes of an ORM operation, waiting for their transaction; see :func:`stage`."""

    group: ChangeGroup
    origin: RequestContext | None


def stage(group: ChangeGroup) -> StagedChanges:
    """Note where an ORM operation was made (the current request, if any), at write time.

    Adapters call this when the rows are written (on the writing thread, with plain
    snapshots) and hand the result to :func:`commit` when the transaction commits, or
    drop it when it rolls back: changes rolled back are never recorded.
    """
    return StagedChanges(group, current())


def commit(staged: StagedChanges) -> None:
    """The staged changes are committed: they join their request's record, or are recorded now.

    Outside a request (or after it ended) each operation is its own record (or, with
    ``change_records="per_row"``, each row), by the ``system`` actor; never raises.
    """
    try:
        _commit(staged)
    except Exception as exc:  # noqa: BLE001 - an ORM commit must never fail because of auditing
        _warn(f"audit record of committed changes could not be built: {exc!r}")


def _commit(staged: StagedChanges) -> None:
    group = staged.group
    if not group.rows:
        return
    context = staged.origin
    if context is not None and not context.finished:
        if context.changes is None:
            context.changes = ChangeLog()
        context.changes.add(group)
        return
    settings = current_settings()
    if settings.change_records == "per_row":
        descriptions = [describe([row], total=1) for row in group.rows]
    else:
        descriptions = [describe(group.rows, total=group.total, primary=group.primary)]
    for description in descriptions:
        unix_ms = time.time_ns() // 1_000_000
        event = AuditEvent(
            id=uuid7(unix_ms),
            unix_ms=unix_ms,
            action=_action(description.action, None),
            actor=SYSTEM_ACTOR,
        )
        _describe_event(event, description)
        if context is not None:  # made by a request that has already answered
            pending = PendingRecord(event, outcome_given=False, actor_given=False)
            event = _complete(pending, context, settings, context.facts(), _failed(context))
        _send(event, settings)


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


def _send(event: AuditEvent, settings: CaptureSettings) -> None:
    """Hand the finished record on (processing and the sink are behind ``deliver``)."""
    if settings.service_name and event.service is None:
        event.service = settings.service_name
    settings.deliver(event)


def _warn(message: str) -> None:
    logs.warn(message)
