"""OpenTelemetry correlation: the trace and span ids of the active span, when there is one.

OpenTelemetry is optional and never imported here: an app that uses it has imported
``opentelemetry.trace`` already, and one that does not pays one dictionary lookup.
"""

from __future__ import annotations

import sys

__all__ = ["active_span"]


def active_span() -> tuple[str, str] | None:
    """``(trace id, span id)`` of the active OpenTelemetry span in W3C hex form, or None.

    None when OpenTelemetry is not in use, no span is active, or the span is not valid
    (the no-op span of an API without an SDK).
    """
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    try:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return format(context.trace_id, "032x"), format(context.span_id, "016x")
    except Exception:  # noqa: BLE001 - a broken tracer costs the correlation, never the request
        return None
