"""The store contract that the OpenSearch and SQLite stores both implement.

One contract test suite (``tests/query/test_contract.py``) runs against both, so the
CLI, the export and the viewer page behave the same whichever store a user runs.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import IO

from audit_middleware.model.encoding import dumps
from audit_middleware.model.event import AuditEvent
from audit_middleware.model.tenancy import TenantSelector
from audit_middleware.query.export import ExportFormat, stored_document_chunks, write_chunks
from audit_middleware.query.model import BOUNDED_COUNT_LIMIT, AuditQuery, BoundedCount, Page, QueryError


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

    def count_bounded(self, query: AuditQuery, limit: int = BOUNDED_COUNT_LIMIT) -> BoundedCount:
        """How many events match, exact up to ``limit``; beyond it only that there are more.

        What a search shows beside its results ("10,000+"): a store can stop counting at
        ``limit``. This default counts exactly and caps the answer.
        """
        return BoundedCount.of(self.count(query), limit)

    @abstractmethod
    def iterate(self, query: AuditQuery) -> Iterator[AuditEvent]:
        """Every matching event, newest first, in constant memory (export reads this).

        ``page_size`` is ignored; a ``cursor`` starts after that event.
        """

    def documents(self, query: AuditQuery) -> Iterator[str]:
        """Every matching event's stored document (JSON text), in ``iterate`` order.

        The export reads this: a store that keeps documents as JSON hands them out as
        stored; this default serialises ``iterate()``.
        """
        return (dumps(event.to_document()).decode("utf-8") for event in self.iterate(query))

    def export(self, query: AuditQuery, out: IO[bytes], format: ExportFormat = "csv") -> int:
        """Write every matching event to ``out`` as CSV or NDJSON; returns the row count.

        This does not record the export: ``audit_middleware.reads.export_audited`` does.
        """
        return write_chunks(out, lambda tally: self.export_chunks(query, format, progress=tally))

    def export_chunks(
        self,
        query: AuditQuery,
        format: ExportFormat = "csv",
        *,
        bom: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[bytes]:
        """Every matching event as export chunks, newest first, from ``documents()``.

        ``progress`` gets the rows written now and then, and the rest when the export
        ends, fails or is closed. A store that reads its documents another way (sliced
        point-in-time searches) overrides this.
        """
        return stored_document_chunks(self.documents(query), format, bom=bom, progress=progress)

    def chained_export_chunks(
        self,
        query: AuditQuery,  # noqa: ARG002 - the stores that offer it read both
        *,
        progress: Callable[[int], None] | None = None,  # noqa: ARG002
    ) -> Iterator[bytes]:
        """An NDJSON export that ``verify --file`` checks on its own: the matching documents
        as stored, a link line (link and content digest, never content) for every other
        record of their chains, and the chains' checkpoints. ``progress`` counts documents.

        Stores whose chains are verified in place (OpenSearch) do not offer it.
        """
        raise QueryError(
            f"{type(self).__name__} cannot export with chain links: verify the trail in place "
            "(audit-middleware verify --store ...)"
        )

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
