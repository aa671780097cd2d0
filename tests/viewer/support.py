"""A small viewer over a SQLite store, for the in-process tests of the viewer and its mounts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from audit_middleware.model.event import Actor, AuditEvent, ChangeSet, RequestFacts, Resource
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.sinks import MemorySink
from audit_middleware.sinks.sqlite import SQLiteSink
from audit_middleware.viewer import Access, AuditViewer, ViewerTokens
from tests.query.conftest import HOUR, MINUTE, make_event

ANN = Actor(id="u1", email="ann@acme.example")
SECRET = "unit-test-viewer-secret-0123456789abcdefghij"


@dataclass
class Fixture:
    """A store with acme and globex events, a viewer over it, and where its reads are recorded."""

    store: SQLiteStore
    reads: MemorySink
    viewer: AuditViewer
    events: dict[str, AuditEvent]


def events() -> dict[str, AuditEvent]:
    """acme events (two in projects) and one globex event with a name to look for.

    Timed from now, not from when the test modules were imported: the live view reads only
    the last minutes, and a long suite reaches these tests well after the import.
    """
    now_ms = time.time_ns() // 1_000_000
    return {
        "update": make_event(
            "update",
            unix_ms=now_ms - MINUTE,
            user=ANN,
            resource=Resource("pod", "p-1", "web-frontend"),
            changes=ChangeSet({"image": "nginx:1.27"}, {"image": "nginx:1.28"}, ("image",)),
            request=RequestFacts(
                method="PATCH", path="/pods/p-1", client_ip="198.51.100.7", user_agent="UA/1"
            ),
            project="p1",
        ),
        "delete": make_event(
            "delete", unix_ms=now_ms - HOUR, user=ANN, resource=Resource("storage", "s", "disk"), project="p2"
        ),
        "login": make_event("login_failed", unix_ms=now_ms - 2 * HOUR, user=Actor(email="eve@acme.example")),
        "globex": make_event(
            "create", unix_ms=now_ms, tenant="globex", resource=Resource("pod", "g", "globex-secret")
        ),
    }


def fixture(tmp_path: Path, *, projects: tuple[str, ...] | None = None, **options: object) -> Fixture:
    """A viewer for ann of acme (limited to ``projects`` when given), with viewer tokens."""
    recorded = events()
    with SQLiteSink(tmp_path / "audit.sqlite3") as sink:
        sink.write(recorded.values())
    store = SQLiteStore(tmp_path / "audit.sqlite3")
    reads = MemorySink()
    viewer = AuditViewer(
        authorize=lambda _request: Access("acme", ANN, projects=projects, tenant_name="Acme"),
        store=store,
        sink=reads,
        tokens=ViewerTokens(SECRET),
        **options,  # type: ignore[arg-type]
    )
    return Fixture(store, reads, viewer, recorded)
