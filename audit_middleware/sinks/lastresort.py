"""The one last resort for a record no sink could take: a line on standard error.

Better a record where process supervisors keep it than no record at all. Every sink
that gives up on a record calls :func:`write_undelivered`, so there is one format.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable

from audit_middleware.model.encoding import dumps
from audit_middleware.model.event import AuditEvent

__all__ = ["write_undelivered"]


def write_undelivered(events: Iterable[AuditEvent], error: BaseException) -> None:
    """Write each event as an ``audit_middleware_undelivered`` JSON line to stderr; never raises."""
    for event in events:
        with contextlib.suppress(Exception):
            line = dumps({"audit_middleware_undelivered": event.to_document(), "error": repr(error)})
            sys.stderr.write(line.decode("utf-8") + "\n")
