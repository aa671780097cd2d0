"""The in-memory sink: every event kept in emit order, safely across threads."""

from __future__ import annotations

import threading

from audit_middleware.sinks import MemorySink
from tests.query.conftest import make_event


def test_events_are_kept_in_emit_order() -> None:
    """events lists what was emitted, oldest first."""
    sink = MemorySink()
    events = [make_event("create", ago_ms=n) for n in range(5)]
    for event in events:
        sink.emit(event)
    assert sink.events == events


def test_events_is_a_snapshot() -> None:
    """Changing the returned list changes neither the sink nor later snapshots."""
    sink = MemorySink()
    sink.emit(make_event("create"))
    snapshot = sink.events
    snapshot.clear()
    assert len(sink.events) == 1
    sink.emit(make_event("delete"))
    assert snapshot == []


def test_documents_are_the_stored_form() -> None:
    """documents() gives each event's ECS document, in order."""
    sink = MemorySink()
    first, second = make_event("create"), make_event("delete")
    sink.emit(first)
    sink.emit(second)
    assert sink.documents() == [first.to_document(), second.to_document()]
    assert [doc["event"]["action"] for doc in sink.documents()] == ["create", "delete"]


def test_clear_forgets_everything() -> None:
    """After clear() the sink is empty and keeps taking events."""
    sink = MemorySink()
    sink.emit(make_event("create"))
    sink.clear()
    assert sink.events == []
    sink.emit(make_event("delete"))
    assert [event.action.id for event in sink.events] == ["delete"]


def test_many_threads_lose_nothing() -> None:
    """Concurrent emits from eight threads are all kept."""
    sink = MemorySink()
    start = threading.Barrier(8)

    def emit_many() -> None:
        start.wait(5)
        for n in range(250):
            sink.emit(make_event("create", ago_ms=n))

    threads = [threading.Thread(target=emit_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(sink.events) == 2000
    assert len({event.id for event in sink.events}) == 2000


def test_flush_and_close_keep_the_events() -> None:
    """Nothing is pending in memory: flush() is True, and close() keeps what was received."""
    sink = MemorySink()
    sink.emit(make_event("create"))
    assert sink.flush(timeout=0) is True
    sink.close()
    assert len(sink.events) == 1
