"""The hand-off from capture to a sink: the processing stage, then ``emit`` (or ``store``).

``audit_middleware.configure()`` makes capture deliver through here, and code that
records into a sink of its own (the CLI's and the viewer's read records) does the
same, so no record reaches a sink unredacted, and a failing sink never costs the record:
what a sink raises on goes to the last resort (``sinks.lastresort``), redacted.

The request path puts one object on :data:`PIPELINE`, the process's delivery worker (a
:class:`~audit_middleware.sinks.worker.BackgroundWorker`): a finished request's raw
values (``capture.derive.RequestJob``) or a record made without a request. The worker
thread derives the records, redacts them and calls the sink's ``emit``. Work is done on
the calling thread instead when the queue is full (back-pressure, never a dropped
record), when the process is ending (``sinks.shutdown`` persists the pipeline before
the sinks), and for durable sinks and ``strict`` deliveries, whose callers must learn
that the record is safe. Every sink's ``flush()`` drains the pipeline first
(``sinks.base``), so what was recorded before it is in the sink after it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from audit_middleware import logs
from audit_middleware.capture.settings import CaptureSettings, Deferred
from audit_middleware.errors import AuditDeliveryError
from audit_middleware.model.event import AuditEvent
from audit_middleware.processing.prepare import prepare
from audit_middleware.processing.redaction import Redactor
from audit_middleware.sinks import base, shutdown
from audit_middleware.sinks.base import Sink
from audit_middleware.sinks.lastresort import shared
from audit_middleware.sinks.worker import BackgroundWorker

__all__ = ["PIPELINE", "Pipeline", "Work", "deliver", "derive_and_deliver"]

Work = AuditEvent | Deferred
Item = tuple[Callable[[Work], None], Work]

_QUEUE = 20_000  # requests waiting to be derived; past it the request thread does its own
_BATCH = 256
_LINGER = 0.02  # seconds a batch may wait to fill: fewer wake-ups of the worker, not later records


def deliver(event: AuditEvent, sink: Sink, redactor: Redactor, *, strict: bool = False) -> None:
    """Redact ``event`` and hand it to ``sink``, on the calling thread.

    Never raises into the caller, except that with ``strict`` (an explicit ``record()``)
    a durable sink's ``AuditDeliveryError`` reaches the caller: the record was not kept.
    """
    prepared = prepare(event, redactor)  # never raises: what it cannot redact is withheld
    try:
        if strict:
            sink.store(prepared)
        else:
            sink.emit(prepared)
    except AuditDeliveryError:
        if strict:
            raise
        shared().keep([prepared], AuditDeliveryError("the sink refused the record"))
    except Exception as exc:  # noqa: BLE001 - the record must survive a broken sink
        shared().keep([prepared], exc)


def derive_and_deliver(work: Work, settings: CaptureSettings, sink: Sink, redactor: Redactor) -> None:
    """Finish ``work`` (derive a request's records) and deliver each record; never raises."""
    if isinstance(work, AuditEvent):
        events = [work]
    else:
        try:
            events = work.events(settings)
        except Exception as exc:  # noqa: BLE001 - a bug here must not stop the worker or the app
            logs.warn(f"audit record could not be built: {exc!r}")
            return
    service = settings.service_name
    for event in events:
        if service and event.service is None:
            event.service = service
        deliver(event, sink, redactor)


class Pipeline(BackgroundWorker[Item]):
    """The process's delivery worker: derivation, redaction and ``emit`` off the request thread."""

    def __init__(self) -> None:
        super().__init__("audit-pipeline", max_queue=_QUEUE, batch_size=_BATCH, linger=_LINGER)

    def _reset(self) -> None:
        super()._reset()
        self.through = False
        """Set when the process is ending: work is done on the calling thread."""

    def started(self) -> None:
        # records queued here must survive SIGTERM and exit even when no sink buffers
        shutdown.guard_process()

    def submit(self, process: Callable[[Work], None], work: Work) -> None:
        """Queue ``work`` for ``process`` on the worker, or run it here (full, or ending)."""
        if self.through or not self.offer((process, work)):
            process(work)

    def handle(self, batch: list[Item]) -> None:
        base.begin_batch()  # sinks may write the batch's records at its end, at once
        try:
            for process, work in batch:
                process(work)  # guarded by derive_and_deliver: one item never costs the others
        finally:
            for events, exc in base.end_batch():
                shared().keep(events, exc)

    def on_worker(self) -> bool:
        """Whether the calling thread is this process's pipeline thread."""
        return threading.current_thread() is self._thread

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until what was queued so far reached its sink (at once on the worker itself)."""
        if self.on_worker() or self.unfinished() == 0:
            return True
        return self.flush(timeout)

    def persist(self, timeout: float | None = None) -> bool:
        """The process is ending: deliver what is queued, and do later work on the caller's thread."""
        self.through = True
        if self.on_worker():
            return True
        if self.flush(timeout):
            return True
        left = self.take_all()  # the worker is stuck (a sink that blocks): do the rest here
        try:
            self.handle(left)
        finally:
            self.done(len(left))
        return True

    def resume(self) -> None:
        """Back to the worker after :meth:`persist` (a new configuration in the same process)."""
        self.through = False


PIPELINE = Pipeline()
"""The one delivery pipeline of this process."""

base.before_flush(PIPELINE.drain)
shutdown.before_sinks(PIPELINE.persist)
