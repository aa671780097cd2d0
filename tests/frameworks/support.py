"""Helpers for the framework adapter tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audit_middleware.model.event import NO_TENANT, AuditEvent
from audit_middleware.query import AuditQuery
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.sinks.sqlite import SQLiteSink
from audit_middleware.testing import CapturedEvents

ALICE_TOKEN = {"Authorization": "Bearer demo-token-alice"}


def only(events: CapturedEvents) -> dict[str, Any]:
    """The one record sent, as its stored document (fails unless there is exactly one)."""
    assert len(events) == 1, [event.action.id for event in events]
    return events[0].to_document()


class StoredTrail:
    """Records written into an embedded SQLite store and read back, as a user of the trail would."""

    def __init__(self, path: Path) -> None:
        self.sink = SQLiteSink(path)
        self.store = SQLiteStore(path)

    def stored(self, tenant: str = NO_TENANT) -> list[AuditEvent]:
        """Every stored record of ``tenant``, oldest first."""
        self.sink.flush(10)
        return list(reversed(list(self.store.iterate(AuditQuery.build(tenant)))))

    def close(self) -> None:
        self.sink.close()
        self.store.close()

    def __enter__(self) -> StoredTrail:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
