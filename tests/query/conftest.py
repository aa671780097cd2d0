"""Stores under test: every contract test runs once per ``AuditStore`` implementation.

A store is reached through a ``StoreHarness``: the store itself and ``load(events)``,
which stores events and returns once they are searchable. Adding an implementation
means adding one harness factory to ``HARNESSES``; ``test_contract.py`` stays as it is.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from audit_middleware.model.actions import CATALOG
from audit_middleware.model.event import Actor, AuditEvent, ChangeSet, RequestFacts, Resource, Scope
from audit_middleware.model.ids import uuid7
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.query.store import AuditStore
from audit_middleware.sinks.sqlite import SQLiteSink

# A fixed "now" a little in the past, so date presets are deterministic (pass it as
# AuditQuery.build(now=NOW)) while every event is still recent enough for a live tail.
NOW = datetime.now(timezone.utc).replace(microsecond=0)
NOW_MS = int(NOW.timestamp()) * 1000
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def make_event(
    action: str = "create",
    *,
    tenant: str | None = "acme",
    ago_ms: int = 0,
    unix_ms: int | None = None,
    user: Actor | None = None,
    resource: Resource | None = None,
    outcome: str | None = None,
    project: str | None = None,
    changes: ChangeSet | None = None,
    details: dict[str, Any] | None = None,
    request: RequestFacts | None = None,
) -> AuditEvent:
    """One event of ``tenant``, ``ago_ms`` before ``NOW`` (or exactly at ``unix_ms``)."""
    moment = NOW_MS - ago_ms if unix_ms is None else unix_ms
    resolved = CATALOG.get(action)
    return AuditEvent(
        id=uuid7(moment),
        unix_ms=moment,
        action=resolved,
        actor=user or Actor(id="u1", email="ann@example.com"),
        outcome=outcome or resolved.default_outcome,  # type: ignore[arg-type]
        resource=resource,
        changes=changes,
        details=details or {},
        tenant=Scope(tenant) if tenant is not None else None,
        project=Scope(project) if project is not None else None,
        request=request,
    )


@dataclass
class StoreHarness:
    """A store under test and how to put events into it synchronously."""

    store: AuditStore
    load: Callable[[Sequence[AuditEvent]], None]


@contextmanager
def sqlite_harness(request: pytest.FixtureRequest) -> Iterator[StoreHarness]:
    """A fresh SQLite file, read by the store; the sink's ``write`` stores synchronously."""
    tmp_path: Path = request.getfixturevalue("tmp_path")
    sink = SQLiteSink(tmp_path / "audit.sqlite3")
    store = SQLiteStore(tmp_path / "audit.sqlite3")

    try:
        yield StoreHarness(store, sink.write)
    finally:
        store.close()
        sink.close()


@contextmanager
def opensearch_harness(request: pytest.FixtureRequest) -> Iterator[StoreHarness]:
    """A freshly set-up prefix on the local node; events are bulk-created, then refreshed."""
    module = pytest.importorskip("audit_middleware.query.opensearch_store")
    from audit_middleware.opensearch.provisioning import SetupConfig, apply  # noqa: PLC0415 - only with a node
    from tests.integration.layout import remove_layout  # noqa: PLC0415

    client: Any = request.getfixturevalue("opensearch")
    prefix: str = request.getfixturevalue("unique_name")
    config = SetupConfig(prefix=prefix, replicas=0, require_ism=False, alert_rules=())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a node without ISM would warn that retention is unmanaged
        apply(client, config)
    router = config.router()
    store = module.OpenSearchStore(client, prefix=prefix)

    def load(events: Sequence[AuditEvent]) -> None:
        body: list[dict[str, Any]] = []
        for event in events:
            stream = router.data_stream_for(router.tier_for(event.tenant.id if event.tenant else None))
            body += [{"create": {"_index": stream, "_id": event.id}}, event.to_document()]
        if body:
            answer = client.bulk(body=body, refresh="true")
            assert not answer["errors"], answer
        client.indices.refresh(index=f"{prefix}-*")

    try:
        yield StoreHarness(store, load)
    finally:
        store.close()
        remove_layout(client, prefix)


HARNESSES: dict[str, Callable[[pytest.FixtureRequest], Any]] = {
    "sqlite": sqlite_harness,
    "opensearch": opensearch_harness,
}


@pytest.fixture(params=["sqlite", pytest.param("opensearch", marks=pytest.mark.opensearch)])
def harness(request: pytest.FixtureRequest) -> Iterator[StoreHarness]:
    """Each store implementation in turn, empty."""
    with HARNESSES[request.param](request) as made:
        yield made


@pytest.fixture
def store(harness: StoreHarness) -> AuditStore:
    """The (empty) store under test."""
    return harness.store


@pytest.fixture
def loaded_store(harness: StoreHarness) -> Callable[[Sequence[AuditEvent]], AuditStore]:
    """``loaded_store(events)`` stores the events (may be called again to add more) and
    returns the store once they are searchable."""

    def load(events: Sequence[AuditEvent]) -> AuditStore:
        harness.load(events)
        return harness.store

    return load
