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
from typing import Any

from audit_middleware import config as _config
from audit_middleware.model.event import AuditEvent
from audit_middleware.sinks.base import drain_pending
from audit_middleware.sinks.memory import MemorySink


class CapturedEvents(list[AuditEvent]):
    """The events recorded inside ``capture_events()``, kept up to date as a list.

    Records are finished on the background delivery worker; reading the list waits for
    the ones made so far, so a test sees every record at once.
    """

    def documents(self) -> list[dict[str, object]]:
        """The events as stored documents."""
        return [event.to_document() for event in self]

    def __len__(self) -> int:
        drain_pending()
        return super().__len__()

    def __iter__(self) -> Iterator[AuditEvent]:
        drain_pending()
        return super().__iter__()

    def __getitem__(self, index: Any) -> Any:
        drain_pending()
        return super().__getitem__(index)

    def __contains__(self, item: object) -> bool:
        drain_pending()
        return super().__contains__(item)

    def __eq__(self, other: object) -> bool:
        drain_pending()
        return super().__eq__(other)

    def __ne__(self, other: object) -> bool:
        drain_pending()
        return super().__ne__(other)

    __hash__ = None  # a list: unhashable, as before

    def __reversed__(self) -> Iterator[AuditEvent]:
        drain_pending()
        return super().__reversed__()

    def clear(self) -> None:
        """Forget the events recorded so far (the ones still being finished too)."""
        drain_pending()
        super().clear()

    def copy(self) -> list[AuditEvent]:
        """A plain list of the events recorded so far."""
        drain_pending()
        return list(super().__iter__())

    def pop(self, index: Any = -1) -> AuditEvent:
        """Remove and return an event (the last by default)."""
        drain_pending()
        return super().pop(index)

    def index(self, *args: Any) -> int:
        """The position of an event."""
        drain_pending()
        return super().index(*args)

    def count(self, value: Any) -> int:
        """How often an event occurs."""
        drain_pending()
        return super().count(value)

    def __repr__(self) -> str:
        drain_pending()
        return super().__repr__()


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
        drain_pending()  # what was recorded inside goes to this sink, not the one restored
        _config.use_config(previous)


class _CapturingSink(MemorySink):
    def __init__(self) -> None:
        super().__init__()
        self.captured = CapturedEvents()

    def emit(self, event: AuditEvent) -> None:
        super().emit(event)
        self.captured.append(event)
