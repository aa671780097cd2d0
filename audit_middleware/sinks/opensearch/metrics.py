"""Delivery counters and gauges, and the one-warning-per-transition health signal.

Every record ends up counted as delivered (or ``already_stored``: a re-sent record found
stored in an earlier backing index), spooled (then replayed), dead-lettered, kept
by the last resort (``fallback``: the spool could not be written; replayed into it later),
refused (``refused``: an explicit durable ``store`` that raised, so the caller knows) or
dropped; ``dropped`` stays 0 unless the user chose a drop policy for a full spool.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from audit_middleware import logs

COUNTERS = (
    "enqueued",
    "delivered",
    "retried",
    "spooled",
    "replayed",
    "dead_lettered",
    "dropped",
    "conflicts",
    "already_stored",
    "fallback",
    "refused",
    "checkpoints_delivered",
)


@dataclass(slots=True)
class DeliveryMetrics:
    """Thread-safe counters; gauges are filled in by the sink when a snapshot is taken."""

    enqueued: int = 0
    delivered: int = 0
    retried: int = 0
    spooled: int = 0
    replayed: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    conflicts: int = 0
    already_stored: int = 0
    """Re-sent records found in an earlier backing index, and not written again."""
    fallback: int = 0
    refused: int = 0
    checkpoints_delivered: int = 0
    """The chains' checkpoints stored (``delivered`` counts audit records only)."""
    healthy: bool = True
    last_error: str | None = None
    degraded_since: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, counter: str, amount: int = 1) -> None:
        """Increase one of ``COUNTERS``."""
        if amount:
            with self._lock:
                setattr(self, counter, getattr(self, counter) + amount)

    def degraded(self, error: str) -> None:
        """Delivery failed; warn once on the transition, not per record."""
        with self._lock:
            self.last_error = error
            was_healthy, self.healthy = self.healthy, False
            if was_healthy:
                self.degraded_since = time.time()
        if was_healthy:
            logs.warn("audit delivery degraded: records are kept in memory and the disk spool", error=error)

    def recovered(self) -> None:
        """Delivery works again; log once on the transition."""
        with self._lock:
            was_healthy, self.healthy = self.healthy, True
            since = self.degraded_since
            self.degraded_since = None
        if not was_healthy:
            logs.warn(
                "audit delivery recovered", degraded_seconds=round(time.time() - (since or time.time()), 1)
            )

    def snapshot(self) -> dict[str, Any]:
        """Counters and health as a plain dict."""
        with self._lock:
            return {
                name: getattr(self, name) for name in (*COUNTERS, "healthy", "last_error", "degraded_since")
            }
