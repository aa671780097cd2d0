"""Helpers for tests of apps that use audit-middleware.

from audit_middleware.testing import capture_events

def test_delete_is_audited(client):
    with capture_events() as events:
        client.delete("/pods/7")
    assert events[0].action.id == "delete"
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from audit_middleware import config as _config
from audit_middleware.model.event import AuditEvent
from audit_middleware.sinks.memory import MemorySink


class CapturedEvents(list[AuditEvent]):
    """The events recorded inside ``capture_events()``, kept up to date as a list."""

    def documents(self) -> list[dict[str, object]]:
        """The events as stored documents."""
        return [event.to_document() for event in self]


@contextmanager
def capture_events() -> Iterator[CapturedEvents]:
    """Send records to memory for the duration, keeping the rest of the configuration."""
    sink = _CapturingSink()
    previous = _config.use_config(None)
    # without a configuration yet, don't build the default sink (a file or database)
    _config.use_config(
        replace(previous, sink=sink) if previous is not None else _config.AuditConfig(sink=sink)
    )
    try:
        yield sink.captured
    finally:
        _config.use_config(previous)


class _CapturingSink(MemorySink):
    def __init__(self) -> None:
        super().__init__()
        self.captured = CapturedEvents()

    def emit(self, event: AuditEvent) -> None:
        super().emit(event)
        self.captured.append(event)
