"""Reads of the audit trail that are themselves audit records.

An exported file leaves the system's access control, so an export is recorded as an
``audit_exported`` event. The query side only reads; whoever serves the read (the CLI,
an embedding app) records it into a sink it holds, explicitly, through the same
processing stage (``sinks.delivery``) as every other record. Nothing global is swapped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from audit_middleware.model.actions import CATALOG
from audit_middleware.model.event import Actor, AuditEvent, Outcome, Resource, Scope
from audit_middleware.model.ids import uuid7
from audit_middleware.model.tenancy import NoTenant, TenantSelector
from audit_middleware.processing.redaction import Redactor
from audit_middleware.query.export import ExportFormat, write_export
from audit_middleware.query.model import AuditQuery
from audit_middleware.query.store import AuditStore
from audit_middleware.sinks.base import Sink
from audit_middleware.sinks.delivery import deliver

__all__ = ["export_audited", "record_read"]


def record_read(
    sink: Sink,
    action: str,
    *,
    actor: Actor,
    tenant: TenantSelector | None,
    details: dict[str, Any],
    outcome: Outcome = "success",
    redactor: Redactor | None = None,
) -> AuditEvent:
    """Record a read of the audit log (``action``, e.g. ``audit_exported``) into ``sink``."""
    now = time.time_ns() // 1_000_000
    event = AuditEvent(
        id=uuid7(now),
        unix_ms=now,
        action=CATALOG.get(action),
        actor=actor,
        outcome=outcome,
        resource=Resource("audit_log"),
        details=details,
        tenant=None if tenant is None or isinstance(tenant, NoTenant) else Scope(tenant),
    )
    deliver(event, sink, redactor or Redactor())
    return event


def export_audited(
    store: AuditStore,
    query: AuditQuery,
    out: IO[bytes],
    sink: Sink,
    *,
    actor: Actor,
    format: ExportFormat = "csv",
    bom: bool = False,
    progress: Callable[[int], None] | None = None,
    redactor: Redactor | None = None,
) -> int:
    """Export like ``write_export`` and record it into ``sink``, also when the export fails.

    The record is an ``audit_exported`` event for the query's tenant, on resource
    ``audit_log``, with details naming the filters, the format and the row count (or
    the error, with outcome ``failure``).
    """
    counter = _Counter()
    details: dict[str, Any] = {"filters": query.describe(), "format": format}
    try:
        rows = write_export(counter.count(store.iterate(query)), out, format, bom=bom, progress=progress)
    except BaseException as exc:
        details.update(rows=counter.rows, error=type(exc).__name__)
        record_read(
            sink,
            "audit_exported",
            actor=actor,
            tenant=query.tenant,
            details=details,
            outcome="failure",
            redactor=redactor,
        )
        raise
    details["rows"] = rows
    record_read(sink, "audit_exported", actor=actor, tenant=query.tenant, details=details, redactor=redactor)
    return rows


class _Counter:
    """Counts events as they pass, so a failed export can say how far it got."""

    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows = 0

    def count(self, events: Iterable[AuditEvent]) -> Iterator[AuditEvent]:
        """Yield ``events``, counting them."""
        for event in events:
            self.rows += 1
            yield event
