"""Reads of the audit trail that are themselves audit records.

Audit entries hold emails, IPs and resource names, so reading them is recorded: a page
of entries or one entry opened as ``audit_viewed``, an export (which leaves the
system's access control) as ``audit_exported``. The query side only reads; whoever
serves the read (the CLI, the viewer page) records it into a sink it holds, explicitly,
through the same processing stage (``sinks.delivery``) as every other record. Nothing
global is swapped.

Those records are themselves entries of the tenant's log; ``READ_ACTIONS`` lets a
reader leave them out (``AuditQuery.exclude_actions``), so reading the log does not
fill it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import replace
from typing import IO, Any

from audit_middleware.model.actions import CATALOG
from audit_middleware.model.event import Actor, AuditEvent, Outcome, RequestFacts, Resource, Scope
from audit_middleware.model.ids import uuid7
from audit_middleware.model.tenancy import NoTenant, TenantSelector
from audit_middleware.processing.redaction import Redactor
from audit_middleware.query.export import ExportFormat, StoredDocument, document_chunks
from audit_middleware.query.model import AuditQuery
from audit_middleware.query.store import AuditStore
from audit_middleware.sinks.base import Sink
from audit_middleware.sinks.delivery import deliver

__all__ = ["READ_ACTIONS", "export_audited", "export_stream_audited", "record_read", "without_reads"]

READ_ACTIONS: tuple[str, ...] = ("audit_viewed", "audit_exported")
"""The actions that record reads of the log itself."""


def without_reads(query: AuditQuery) -> AuditQuery:
    """``query`` leaving out the records of reads, unless it filters by action (which then decides).

    >>> without_reads(AuditQuery.build("acme")).exclude_actions
    ('audit_viewed', 'audit_exported')
    >>> without_reads(AuditQuery.build("acme", action="audit_exported")).exclude_actions
    ()
    """
    if query.actions:  # an action filter already says whether reads are in
        return query
    return replace(query, exclude_actions=tuple(dict.fromkeys((*query.exclude_actions, *READ_ACTIONS))))


def record_read(
    sink: Sink,
    action: str,
    *,
    actor: Actor,
    tenant: TenantSelector | None,
    details: dict[str, Any],
    outcome: Outcome = "success",
    redactor: Redactor | None = None,
    entry_id: str | None = None,
    request: RequestFacts | None = None,
) -> AuditEvent:
    """Record a read of the audit log (``action``, e.g. ``audit_exported``) into ``sink``.

    The resource is the tenant's ``audit_log``; ``entry_id`` names the one entry read,
    when it was one. ``request`` holds the reader's HTTP facts (address, user agent).
    """
    now = time.time_ns() // 1_000_000
    event = AuditEvent(
        id=uuid7(now),
        unix_ms=now,
        action=CATALOG.get(action),
        actor=actor,
        outcome=outcome,
        resource=Resource("audit_log", entry_id),
        details=details,
        tenant=None if tenant is None or isinstance(tenant, NoTenant) else Scope(tenant),
        request=request,
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
    request: RequestFacts | None = None,
) -> int:
    """Export like ``write_export`` and record it into ``sink``, also when the export fails.

    The record is an ``audit_exported`` event for the query's tenant, on resource
    ``audit_log``, with details naming the filters, the format and the row count (or
    the error, with outcome ``failure``).
    """
    rows = 0

    def count(done: int) -> None:
        nonlocal rows
        rows += done
        if progress is not None:
            progress(done)

    chunks = export_stream_audited(
        store,
        query,
        sink,
        actor=actor,
        format=format,
        bom=bom,
        redactor=redactor,
        request=request,
        progress=count,
    )
    with closing(chunks):
        for chunk in chunks:
            out.write(chunk)
    return rows


def export_stream_audited(
    store: AuditStore,
    query: AuditQuery,
    sink: Sink,
    *,
    actor: Actor,
    format: ExportFormat = "csv",
    bom: bool = False,
    redactor: Redactor | None = None,
    request: RequestFacts | None = None,
    progress: Callable[[int], None] | None = None,
) -> Generator[bytes, None, None]:
    """The export as chunks of bytes (a streamed HTTP response), recorded as it ends.

    The ``audit_exported`` record is written when the last chunk has been taken
    (success, with the row count), when reading fails, or when the consumer closes the
    stream early (a download cancelled: failure, with the rows sent so far). A stream
    never started records nothing, as nothing was read.
    """
    counter = _Counter()
    details: dict[str, Any] = {"filters": query.describe(), "format": format}
    outcome: Outcome = "failure"
    try:
        yield from document_chunks(counter.count(store.documents(query)), format, bom=bom, progress=progress)
        outcome = "success"
    except GeneratorExit:
        details["error"] = "closed before the end"
        raise
    except BaseException as exc:
        details["error"] = type(exc).__name__
        raise
    finally:
        details["rows"] = counter.rows
        record_read(
            sink,
            "audit_exported",
            actor=actor,
            tenant=query.tenant,
            details=details,
            outcome=outcome,
            redactor=redactor,
            request=request,
        )


class _Counter:
    """Counts events as they pass, so a failed export can say how far it got."""

    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows = 0

    def count(self, documents: Iterable[StoredDocument]) -> Iterator[StoredDocument]:
        """Yield ``documents``, counting them."""
        for document in documents:
            self.rows += 1
            yield document
