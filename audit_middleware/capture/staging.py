"""Staging the changes of registered models until their transaction commits.

ORM adapters call :func:`stage` when rows are written (on the writing thread, with plain
snapshots) and :func:`commit` when the transaction commits; rolled-back changes are
simply never committed. Committed changes join their request's record, or are recorded
at once outside a request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from audit_middleware import logs
from audit_middleware.capture.change_records import describe
from audit_middleware.capture.changes import ChangeGroup, ChangeLog
from audit_middleware.capture.completion import (
    action_for,
    apply,
    complete,
    complete_outside,
    current_settings,
    failed_status,
    send,
)
from audit_middleware.capture.context import AmbientContext, PendingRecord, RequestContext, ambient, current
from audit_middleware.model.event import SYSTEM_ACTOR, AuditEvent
from audit_middleware.model.ids import uuid7

__all__ = ["StagedChanges", "commit", "stage"]


@dataclass(slots=True)
class StagedChanges:
    """The changes of an ORM operation, waiting for their transaction; see :func:`stage`."""

    group: ChangeGroup
    origin: RequestContext | None
    scope: AmbientContext | None = None


def stage(group: ChangeGroup) -> StagedChanges:
    """Note where an ORM operation was made (the current request, if any), at write time.

    Adapters call this when the rows are written (on the writing thread, with plain
    snapshots) and hand the result to :func:`commit` when the transaction commits, or
    drop it when it rolls back: changes rolled back are never recorded.
    """
    context = current()
    return StagedChanges(group, context, ambient() if context is None else None)


def commit(staged: StagedChanges) -> None:
    """The staged changes are committed: they join their request's record, or are recorded now.

    Outside a request (or after it ended) each operation is its own record (or, with
    ``change_records="per_row"``, each row), by the ``audit_context()`` actor or
    ``system``; never raises.
    """
    try:
        _commit(staged)
    except Exception as exc:  # noqa: BLE001 - an ORM commit must never fail because of auditing
        logs.warn(f"audit record of committed changes could not be built: {exc!r}")


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
            action=action_for(description.action, None),
            actor=SYSTEM_ACTOR,
        )
        apply(event, description)
        if context is not None:  # made by a request that has already answered
            pending = PendingRecord(event, outcome_given=False, actor_given=False)
            event = complete(pending, context, settings, context.facts(), failed_status(context))
        else:
            complete_outside(event, staged.scope, actor_given=False)
        send(event, settings)
