"""Celery: the audit context travels from the code that queues a task to the task.

    from audit_middleware.frameworks.celery import install
    install()                      # once per process, where the Celery app is built

The actor, tenant, project, request id and trace id of the request (or the
``audit_context()``) that queues a task travel in a message header
(``before_task_publish``); the task runs inside an ``audit_context()`` made from it
(``task_prerun`` / ``task_postrun``), so what it records, and the changes of registered
models it commits, name that actor and carry those ids. A task run eagerly
(``task_always_eager``, ``.apply()``) publishes no message: it takes the same context from
its caller, and records apart from the caller's request, as it would in a worker.

The header is read as data, never trusted for more than it says: anyone who can publish
to the broker can already run tasks. Values of the wrong shape are ignored.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from audit_middleware.errors import MissingDependencyError

try:
    from celery import signals
except ImportError as exc:  # the one clear message this adapter's users need
    raise MissingDependencyError(
        "audit_middleware.frameworks.celery needs Celery, which is not installed: "
        "pip install opensearch-audit-middleware[celery]"
    ) from exc

from audit_middleware import logs
from audit_middleware.capture.completion import ANONYMOUS, current_settings, resolve_actor, resolve_scope
from audit_middleware.capture.context import AmbientContext, ambient, audit_context, current
from audit_middleware.errors import AuditValidationError
from audit_middleware.model.event import Actor, Scope

__all__ = ["HEADER", "carried", "install"]

HEADER = "audit_middleware"
"""The message header that carries the audit context."""
_TEXT_LIMIT = 1024

_lock = threading.Lock()
_installed = False
_open: dict[str, list[AbstractContextManager[AmbientContext]]] = {}  # task id -> entered contexts


def install() -> None:
    """Connect the publish and run signals (once per process, whatever the number of apps)."""
    global _installed  # noqa: PLW0603 - the signals are process-wide
    with _lock:
        if _installed:
            return
        signals.before_task_publish.connect(_on_publish, weak=False, dispatch_uid="audit_middleware.publish")
        signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid="audit_middleware.prerun")
        signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid="audit_middleware.postrun")
        _installed = True


def carried() -> dict[str, Any] | None:
    """The audit context a task queued now would carry (the current request's or ``audit_context()``'s)."""
    context = current()
    if context is not None:
        settings = current_settings()
        context.note_span()
        actor = resolve_actor(context, settings)
        return _encode(
            AmbientContext(
                actor=None if actor is ANONYMOUS else actor,
                tenant=resolve_scope(context, settings, "tenant"),
                project=resolve_scope(context, settings, "project"),
                request_id=context.request_id,
                trace_id=context.trace_id,
                span_id=context.span_id,
            )
        )
    scope = ambient()
    return None if scope is None else _encode(scope)


def _on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    try:
        values = carried()
        if values and headers is not None:
            headers[HEADER] = values
    except Exception as exc:  # noqa: BLE001 - queueing a task must never fail because of auditing
        logs.warn("audit context could not be attached to a task", error=f"{type(exc).__name__}: {exc}")


def _on_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    try:
        request = getattr(task, "request", None)
        values = getattr(request, HEADER, None) or (getattr(request, "headers", None) or {}).get(HEADER)
        if values is None and getattr(request, "is_eager", False):
            values = carried()  # no message was published: the caller is on this very thread
        if not isinstance(values, Mapping) or task_id is None:
            return
        manager = audit_context(**_decode(values))
        manager.__enter__()
        _open.setdefault(task_id, []).append(manager)
    except Exception as exc:  # noqa: BLE001 - a task must never fail because of auditing
        logs.warn("audit context of a task could not be restored", error=f"{type(exc).__name__}: {exc}")


def _on_postrun(task_id: str | None = None, **_: Any) -> None:
    entered = _open.get(task_id or "")
    if not entered:
        return
    manager = entered.pop()
    if not entered:
        del _open[task_id or ""]
    manager.__exit__(None, None, None)


def _encode(scope: AmbientContext) -> dict[str, Any] | None:
    values: dict[str, Any] = {
        "actor": _actor_values(scope.actor),
        "tenant": _scope_values(scope.tenant),
        "project": _scope_values(scope.project),
        "request_id": scope.request_id,
        "trace_id": scope.trace_id,
        "span_id": scope.span_id,
    }
    kept = {key: value for key, value in values.items() if value is not None}
    return kept or None


def _actor_values(actor: Actor | None) -> dict[str, Any] | None:
    if actor is None:
        return None
    values: dict[str, Any] = {"id": actor.id, "name": actor.name, "email": actor.email, "kind": actor.kind}
    if actor.roles:
        values["roles"] = list(actor.roles)
    if actor.impersonator is not None:
        values["impersonator"] = _actor_values(actor.impersonator)
    return {key: value for key, value in values.items() if value is not None}


def _scope_values(scope: Scope | None) -> dict[str, str] | None:
    if scope is None:
        return None
    return {"id": scope.id} if scope.name is None else {"id": scope.id, "name": scope.name}


def _decode(values: Mapping[str, Any]) -> dict[str, Any]:
    """``audit_context()`` arguments from a header; a value of the wrong shape is left out."""
    decoded: dict[str, Any] = {}
    actor = _actor_from(values.get("actor"))
    if actor is not None:
        decoded["actor"] = actor
    for key in ("tenant", "project"):
        scope = values.get(key)
        if isinstance(scope, Mapping) and _text(scope.get("id")):
            decoded[key] = Scope(scope["id"], scope.get("name") if _text(scope.get("name")) else None)
    for key in ("request_id", "trace_id", "span_id"):
        if _text(values.get(key)):
            decoded[key] = values[key]
    return decoded


def _actor_from(values: object, depth: int = 0) -> Actor | None:
    if not isinstance(values, Mapping) or depth > 1:
        return None
    try:
        return Actor(
            id=values.get("id") if _text(values.get("id")) else None,
            name=values.get("name") if _text(values.get("name")) else None,
            email=values.get("email") if _text(values.get("email")) else None,
            roles=tuple(r for r in values.get("roles") or () if _text(r)),
            kind=values.get("kind", "user"),
            impersonator=_actor_from(values.get("impersonator"), depth + 1),
        )
    except (AuditValidationError, TypeError):
        return None


def _text(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _TEXT_LIMIT
