"""An in-memory sink, for tests (the library's and its users')."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from audit_middleware.sinks.base import Sink, drain_pending

if TYPE_CHECKING:
    from audit_middleware.model.event import AuditEvent


class MemorySink(Sink):
    """Keeps every event in a list, in emit order; thread-safe.

    >>> sink = MemorySink()
    >>> sink.events
    []
    """

    def __init__(self) -> None:
        self._events: list[AuditEvent] = []
        self._lock = threading.Lock()

    def emit(self, event: AuditEvent) -> None:
        """Keep the event."""
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[AuditEvent]:
        """A snapshot of the events recorded so far (the delivery worker is waited for)."""
        drain_pending()
        with self._lock:
            return list(self._events)

    def documents(self) -> list[dict[str, Any]]:
        """The events as the documents a store would keep."""
        return [event.to_document() for event in self.events]

    def clear(self) -> None:
        """Forget every event recorded so far."""
        drain_pending()
        with self._lock:
            self._events.clear()
