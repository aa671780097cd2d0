"""Turning actions into finished audit records and handing them to the sink.

``record()`` works inside a request (the record is completed when the response is known:
status, outcome, late-resolved actor) and outside one (background jobs, scripts: the
record is emitted at once, by the actor of the ``audit_context()`` in force, else by
``system``, unless one is given).

At the end of a request :func:`finish_request` keeps what only the request thread
knows and hands a ``RequestJob`` to the background worker, which builds the record by
precedence (``capture.derive``): explicit ``record()`` calls, else a route rule's action
(enriched with the committed changes of registered models, see ``capture.staging``),
else the changes themselves, else the generic record of a state-changing method.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from audit_middleware import logs
from audit_middleware.capture.changes import REGISTRY, settle
from audit_middleware.capture.completion import (
    complete,
    complete_outside,
    current_settings,
    failed_status,
    resolve_actor,
    resolve_scope,
    send,
)
from audit_middleware.capture.context import LazyContext, PendingRecord, RequestContext, ambient, current
from audit_middleware.capture.derive import RawRequestJob, RequestJob
from audit_middleware.capture.settings import CaptureSettings
from audit_middleware.capture.snapshots import snapshot
from audit_middleware.capture.tracing import active_span
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

__all__ = [
    "finish_bound",
    "finish_request",
    "may_audit",
    "may_record",
    "record",
    "record_detected",
    "resolve_late",
    "response_begun",
]


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
        details=snapshot(details) if details else {},
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
    """End the request: keep what only this thread knows and hand the rest to the worker.

    Called once by the middleware at the end. ``failed`` is True when the app raised or
    the response broke off; a status of 400 or more also counts as failure. Here, on the
    request thread, the ORM's pending changes are settled and the actor, tenant and
    project resolved (the framework's request is still reachable); the records are
    derived from that on the background worker (``capture.derive``). A request that
    cannot produce a record stops after a few attribute reads.
    """
    if context.finished:
        return
    context.finished = True
    try:
        config = current_settings()
        job = _request_job(context, config, failed=failed)
        if job is not None:
            config.submit(job)
    except Exception as exc:  # noqa: BLE001 - auditing must never break the host app's response
        logs.warn(f"audit record of {context.method} {context.path[:200]} could not be built: {exc!r}")


def response_begun(request: LazyContext) -> None:
    """The response of a middleware's request has started (its raw start is on ``request``).

    What needs the request thread happens now: with a built context, the status and the
    late resolution (:func:`resolve_late`). A request that may be audited and that nothing
    asked about stays raw, unless resolvers are configured (they read the framework's
    request, reachable only now); its OpenTelemetry span is noted for the worker.
    """
    context = request.context
    if context is None:
        if not request.audited:
            return
        if not request.config.has_resolvers():
            request.span = active_span()
            return
        context = request.open()  # applies the response start
    else:
        request.apply_start(context)
    resolve_late(context)


def finish_bound(request: LazyContext, *, failed: bool = False) -> None:
    """End a middleware's request: finish its context, or hand its raw values to the worker.

    Called when the response has ended (``failed`` as for :func:`finish_request`); a
    second call (the middleware's, after an adapter ended the request early) does nothing.
    A request that may be audited and whose context nothing built is queued as it is
    (``capture.derive.RawRequestJob``); one that may not be audited ends here.
    """
    if request.finished:
        return
    if request.context is None and request.audited:
        settle()  # an adapter's hand-over of a change may build the context still
        if request.config.has_resolvers():
            # the response never started (the app raised first): the resolvers read the
            # framework's request, which only this thread has (finish_request calls them)
            request.open()
    context = request.end(failed=failed)
    if context is not None:
        finish_request(context, failed=failed)
        return
    if not request.audited:
        return
    config = request.config
    request.native = None  # the queued job holds no framework request (its body, say) alive
    request.drop_thread_hooks()
    try:
        config.submit(RawRequestJob(request, time.time_ns() // 1_000_000, _honest(config)))
    except Exception as exc:  # noqa: BLE001 - auditing must never break the host app's response
        logs.warn(f"audit record of a request could not be queued: {exc!r}")


def _request_job(context: RequestContext, config: CaptureSettings, *, failed: bool) -> RequestJob | None:
    status = context.status_code
    if failed and (status is None or status < 500):
        context.status_code = 500
    failure = failed or failed_status(context)
    settle()
    if not context.explicit:
        if context.skip_audit:
            return None
        method = context.method
        if not (
            context.changes
            or context.force_audit
            or method in config.audit_methods
            or method in config.rules.methods
        ):
            return None
    # resolved when the response started, as a rule: the resolvers run again only for what was not found
    actor = context.actor if context.actor is not None else resolve_actor(context, config)
    tenant = context.tenant if context.tenant is not None else resolve_scope(context, config, "tenant")
    project = context.project if context.project is not None else resolve_scope(context, config, "project")
    # What the request knows is settled: a late record (a commit after the response) takes
    # it from here, and the queued job holds no framework request (its body, say) alive.
    context.actor, context.tenant, context.project = actor, tenant, project
    context.native_request = context.actor_lookup = None
    return RequestJob(context, failure, time.time_ns() // 1_000_000, actor, tenant, project, _honest(config))


def _honest(config: CaptureSettings) -> bool:
    honest = config.honest_outcomes
    return REGISTRY.active if honest is None else honest


def may_audit(method: str, config: CaptureSettings) -> bool:
    """Whether a request of ``method`` (as the server gave it) may be audited whatever its app does.

    Such a request ends with a record even when nothing asked for its context: the worker
    builds it (``capture.derive.RawRequestJob``); any other request's context is built only
    if something asks for it (``capture.context.LazyContext``). A method in lower case is
    audited as its upper case, so it counts here.
    """
    return method in config.audit_methods or method in config.rules.methods or not method.isupper()


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
        if context.actor is None:
            resolve_actor(context, config)
        if context.tenant is None:
            resolve_scope(context, config, "tenant")
        if context.project is None:
            resolve_scope(context, config, "project")
