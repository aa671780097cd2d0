"""Records of ORM capture and auth events on the real node: keyed bulk changes, targets and
span.id fit the index template, and read back as they were written (no dead letters)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlmodel")
pytest.importorskip("opentelemetry.sdk.trace")

from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider

from audit_middleware.capture.changes import REGISTRY
from audit_middleware.opensearch.client import build_client
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.opensearch.provisioning import SetupConfig, apply
from audit_middleware.query import AuditQuery
from audit_middleware.query.opensearch_store import OpenSearchStore
from audit_middleware.sinks.opensearch.sink import OpenSearchSink
from integrations import fastapi_sqlmodel_app as example
from tests.conftest import OPENSEARCH_URL

pytestmark = pytest.mark.opensearch
OPTIONS = REGISTRY.tracking_for(example.VirtualMachine)


def test_orm_and_auth_records_round_trip_through_the_node(
    opensearch: Any, tmp_path: Path, unique_name: str
) -> None:
    """Login, creates, a bulk update and a bulk delete, under a span: stored and read back intact."""
    assert OPTIONS is not None
    REGISTRY.add(example.VirtualMachine, OPTIONS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # retention warnings of a node without a snapshot repository
        apply(opensearch, SetupConfig(prefix=unique_name, replicas=0, require_ism=False))
    settings = ConnectionSettings(urls=(OPENSEARCH_URL,), prefix=unique_name)
    sink = OpenSearchSink(settings=settings, state_dir=tmp_path / "state")
    tracer = TracerProvider().get_tracer("round-trip")
    try:
        client = TestClient(example.create_app(sink=sink))
        token = client.post("/token", data={"username": "alice", "password": "wonderland"}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        with tracer.start_as_current_span("batch") as span:
            for name in ("a", "b", "c"):
                client.post("/vms/", json={"name": name, "root_password": "never-stored"}, headers=headers)
            client.post("/vms/stop", headers=headers)
            client.delete("/vms/", headers=headers)
        assert sink.flush(30)
        assert sink.status()["dead_lettered"] == 0
        opensearch.indices.refresh(index=f"{unique_name}-*")
        store = OpenSearchStore(build_client(settings), prefix=unique_name)
        stored = list(store.iterate(AuditQuery.build("acme")))
        by_action = {(e.action.id, len(e.targets)) for e in stored}
        assert {("login", 0), ("create", 0), ("update", 3), ("delete", 3)} <= by_action
        bulk = next(e for e in stored if e.action.id == "update" and e.targets)
        assert bulk.changes is not None
        assert set(bulk.changes.after) == {f"virtual_machine:{t.id}" for t in bulk.targets}
        assert bulk.details["count"] == 3
        trace_id = format(span.get_span_context().trace_id, "032x")
        traced = [e for e in stored if e.request and e.request.trace_id == trace_id]
        assert len(traced) == 5  # three creates, the bulk update, the bulk delete
        assert all(e.request and e.request.span_id for e in traced)
        assert "never-stored" not in repr([e.to_document() for e in stored])
    finally:
        sink.close(5)
        opensearch.indices.delete_data_stream(name=f"{unique_name}-*")
        opensearch.indices.delete_index_template(name=f"{unique_name}-*")
        opensearch.cluster.delete_component_template(name=f"{unique_name}-*")
