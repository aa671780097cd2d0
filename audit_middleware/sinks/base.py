"""The sink interface, and the promise every sink's ``flush()`` keeps."""

from __future__ import annotations

import functools
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audit_middleware.model.event import AuditEvent

__all__ = [
    "BatchEnd",
    "Sink",
    "Unwritten",
    "before_flush",
    "begin_batch",
    "drain_pending",
    "end_batch",
    "hold",
    "release",
]

_before_flush: list[Callable[[float | None], bool]] = []
_batch = threading.local()  # the items sinks hold for the delivery batch open on this thread

Unwritten = tuple[list["AuditEvent"], Exception]
"""Records a sink held for a batch and could not write, and why: the last resort keeps them."""
BatchEnd = Callable[[list[Any]], "Unwritten | None"]


def begin_batch() -> None:
    """A batch of deliveries starts on this thread (the delivery worker's): a sink may hold
    what it writes until :func:`end_batch` (:func:`hold`), one write or hand-over instead of
    one a record. A write is a system call that releases the GIL, and beside a busy request
    thread getting it back can cost a switch interval (5 ms): one a batch, not one a record.
    """
    _batch.held = {}


def end_batch() -> list[Unwritten]:
    """The batch ends: each sink's held items go to its ``end``; what could not be written."""
    held: dict[int, tuple[BatchEnd, list[Any]]] = getattr(_batch, "held", None) or {}
    _batch.held = None
    unwritten = (end(items) for end, items in held.values())
    return [failure for failure in unwritten if failure is not None]


def hold(owner: object, item: Any, end: BatchEnd) -> bool:
    """Hold ``item`` for ``owner`` until this thread's delivery batch ends, when ``end`` gets
    all of them in order; False when no batch is open, and the caller writes now."""
    held: dict[int, tuple[BatchEnd, list[Any]]] | None = getattr(_batch, "held", None)
    if held is None:
        return False
    entry = held.get(id(owner))
    if entry is None:
        held[id(owner)] = (end, [item])
    else:
        entry[1].append(item)
    return True


def release(owner: object) -> list[Any]:
    """What ``owner`` holds in this thread's open batch, taken out of it (a flush mid-batch)."""
    held: dict[int, tuple[BatchEnd, list[Any]]] | None = getattr(_batch, "held", None)
    entry = None if held is None else held.pop(id(owner), None)
    return [] if entry is None else entry[1]


def before_flush(hook: Callable[[float | None], bool]) -> None:
    """Run ``hook(timeout)`` before every sink's ``flush()`` (``sinks.delivery`` drains its pipeline)."""
    _before_flush.append(hook)


def drain_pending(timeout: float | None = None) -> bool:
    """Wait until records made so far have reached their sinks' ``emit``; True when they have."""
    results = [hook(timeout) for hook in _before_flush]  # every hook, no short circuit
    return all(results)


def _draining(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def after_drain(self: Sink, timeout: float | None = None) -> Any:
        drained = drain_pending(timeout)
        result = method(self, timeout)
        return result and drained if isinstance(result, bool) else result

    after_drain.__drains__ = True  # type: ignore[attr-defined]
    return after_drain


_DRAINING = ("flush", "persist", "close")


class Sink(ABC):
    """Receives finished, redacted audit events.

    ``emit`` runs on the process's delivery thread (``sinks.delivery``), or on the
    request's thread when that queue is full, when the process is ending and for durable
    sinks: it must return quickly, must not wait on the network and must not raise for
    delivery problems (keep or spool the record instead). ``store`` runs on the caller's
    thread. ``flush()``, ``persist()`` and ``close()`` first wait for the records made
    before them to reach ``emit`` (every subclass's methods are wrapped so), so reading a
    sink after ``flush()`` shows everything recorded before.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _DRAINING:
            own = cls.__dict__.get(name)
            if own is not None and not getattr(own, "__drains__", False):
                setattr(cls, name, _draining(own))

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

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver what is pending; True when nothing is left. Default: nothing pending."""
        return drain_pending(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush and release resources. Default: flush."""
        self.flush(timeout)
