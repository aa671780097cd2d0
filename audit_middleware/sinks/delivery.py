"""The hand-off from capture to a sink: the processing stage, then ``emit`` (or ``store``).

``audit_middleware.configure()`` makes capture deliver through here, and code that
records into a sink of its own (the CLI's and the viewer's read records) does the
same, so no record reaches a sink unredacted, and a failing sink never costs the record:
what a sink raises on goes to the last resort (``sinks.lastresort``), redacted.
"""

from __future__ import annotations

from audit_middleware.errors import AuditDeliveryError
from audit_middleware.model.event import AuditEvent
from audit_middleware.processing.prepare import prepare
from audit_middleware.processing.redaction import Redactor
from audit_middleware.sinks.base import Sink
from audit_middleware.sinks.lastresort import shared

__all__ = ["deliver"]


def deliver(event: AuditEvent, sink: Sink, redactor: Redactor, *, strict: bool = False) -> None:
    """Redact ``event`` and hand it to ``sink``.

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
