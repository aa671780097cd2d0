"""The hand-off from capture to a sink: the processing stage, then ``emit``.

``audit_middleware.configure()`` makes capture deliver through here, and code that
records into a sink of its own (the CLI's and the viewer's read records) does the
same, so no record reaches a sink unredacted, and a failing sink never costs the record.
"""

from __future__ import annotations

from audit_middleware.model.event import AuditEvent
from audit_middleware.processing.prepare import prepare
from audit_middleware.processing.redaction import Redactor
from audit_middleware.sinks.base import Sink
from audit_middleware.sinks.lastresort import write_undelivered

__all__ = ["deliver"]


def deliver(event: AuditEvent, sink: Sink, redactor: Redactor) -> None:
    """Redact ``event`` and hand it to ``sink``; never raises into the caller."""
    try:
        sink.emit(prepare(event, redactor))
    except Exception as exc:  # noqa: BLE001 - the record must survive a broken sink
        write_undelivered([event], exc)
