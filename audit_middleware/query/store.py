"""The store contract that the OpenSearch and SQLite stores both implement.

One contract test suite (``tests/query/test_contract.py``) runs against both, so the
CLI, the export and the viewer page behave the same whichever store a user runs.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import datetime
from typing import IO

from audit_middleware.model.event import AuditEvent
from audit_middleware.model.tenancy import TenantSelector
from audit_middleware.query.export import ExportFormat, StoredDocument, write_documents
from audit_middleware.query.model import AuditQuery, BoundedCount, Page


class AuditStore(ABC):
    """Read access to stored audit records, always scoped to one tenant.

    The meaning of every filter is written down on ``AuditQuery``.
    """

    @abstractmethod
    def search(self, query: AuditQuery) -> Page:
        """One page of matching events, newest first (``@timestamp`` then ``event.id``)."""

    @abstractmethod
    def get(self, tenant: TenantSelector, event_id: str) -> AuditEvent | None:
        """One event of ``tenant`` (an id or ``NO_TENANT``) by id; None when absent or another tenant's."""

    @abstractmethod
    def count(self, query: AuditQuery) -> int:
        """How many events match (``page_size`` and ``cursor`` are ignored)."""

    @abstractmethod
    def iterate(self, query: AuditQuery) -> Iterator[AuditEvent]:
        """Every matching event, newest first, in constant memory (export reads this).

        ``page_size`` is ignored; a ``cursor`` starts after that event.
        """

    def count_bounded(self, query: AuditQuery, limit: int = BoundedCount.LIMIT) -> BoundedCount:
        """How many events match, counted exactly up to ``limit`` (then shown as "10,000+").

        Cheap beside a search, where ``count`` may read every match. Stores override it;
        this default counts exactly and caps.
        """
        return BoundedCount.of(self.count(query), limit)

    def documents(self, query: AuditQuery) -> Iterator[StoredDocument]:
        """Every matching event's stored document, in ``iterate`` order: JSON text or parsed.

        The export reads this (NDJSON writes a text as it is; CSV reads the fields), so a
        store hands out what it holds without building an ``AuditEvent`` per record:
        SQLite the stored JSON text, OpenSearch the ``_source``. This default rebuilds
        the documents from ``iterate()``.
        """
        return (event.to_document() for event in self.iterate(query))

    def export(self, query: AuditQuery, out: IO[bytes], format: ExportFormat = "csv") -> int:
        """Write every matching event to ``out`` as CSV or NDJSON; returns the row count.

        This does not record the export: ``audit_middleware.reads.export_audited`` does.
        """
        return write_documents(self.documents(query), out, format)

    @abstractmethod
    def tail(
        self,
        query: AuditQuery,
        since: datetime | None = None,
        *,
        poll_interval: float = 1.0,
        stop: threading.Event | None = None,
    ) -> Iterator[list[AuditEvent]]:
        """Live: yields each poll's new events (newest first) until ``stop`` is set.

        With ``since``, the matching events at or after it come first; without it, only
        events that arrive after the tail starts. Polls that find nothing yield nothing,
        and no event is yielded twice. ``page_size`` and ``cursor`` are ignored.
        """

    def purge_older_than(self, cutoff: datetime) -> int:
        """Delete events older than ``cutoff``; OpenSearch leaves this to ISM."""
        raise NotImplementedError(f"{type(self).__name__} does not purge: retention is managed by ISM")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
