"""The sink interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from audit_middleware.model.event import AuditEvent


class Sink(ABC):
    """Receives finished, redacted audit events.

    ``emit`` runs on the request path: it must return quickly, must not wait on the
    network and must not raise for delivery problems (keep or spool the record instead).
    """

    @abstractmethod
    def emit(self, event: AuditEvent) -> None:
        """Take one event."""

    def store(self, event: AuditEvent) -> None:
        """Take one event for a caller who must learn of a failure (an explicit ``record()``).

        A durable sink keeps the event before it returns, or raises
        ``AuditDeliveryError`` and keeps nothing. Default: ``emit``.
        """
        self.emit(event)

    def persist(self, timeout: float | None = None) -> bool:
        """The process may end any moment: keep what is buffered in memory on disk (its store
        or spool), and write later records through, without waiting on the network.

        Called from signal handlers and shutdown hooks (``sinks.shutdown``); True when
        nothing is left in memory. Default: ``flush``.
        """
        return self.flush(timeout)

    def flush(self, timeout: float | None = None) -> bool:  # noqa: ARG002 - for subclasses
        """Deliver what is pending; True when nothing is left. Default: nothing pending."""
        return True

    def close(self, timeout: float | None = None) -> None:
        """Flush and release resources. Default: flush."""
        self.flush(timeout)
