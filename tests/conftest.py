"""Shared fixtures: a client for the local OpenSearch node, and a clean audit set-up per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from audit_middleware import config as audit_config
from audit_middleware import context as audit_context
from audit_middleware.sinks import MemorySink

ROOT = Path(__file__).resolve().parent.parent
NODE_SCRIPT = ROOT / "opensearch-local" / "node.py"
OPENSEARCH_URL = os.environ.get(
    "AUDIT_TEST_OPENSEARCH_URL", f"http://127.0.0.1:{os.environ.get('AUDIT_OPENSEARCH_PORT', '9200')}"
)


def _under_ci() -> bool:
    return os.environ.get("CI") == "true"


def _node_answers(client: object) -> bool:
    try:
        return bool(client.ping())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - any failure means "not answering"
        return False


@pytest.fixture(scope="session")
def opensearch() -> Iterator[object]:
    """A client for the running local node; starts it when Java is here and it is down.

    Skips when Java is missing on a developer machine; fails under CI=true, where the
    integration tests must run.
    """
    client = OpenSearch([OPENSEARCH_URL], timeout=60)
    if not _node_answers(client):
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            if _under_ci():
                pytest.fail("CI=true but Java is missing: the OpenSearch integration tests cannot run")
            pytest.skip("Java is not installed: skipping tests that need the local OpenSearch node")
        subprocess.run([sys.executable, str(NODE_SCRIPT), "start"], check=True)
    yield client
    client.close()


def require_plugin(client: object, plugin: str) -> None:
    """Skip, naming the reason, when the local node lacks an OpenSearch plugin.

    The ISM and alerting plugin zips are not published to Maven Central, from which the
    local node is assembled (see docs/architecture.md); with their zips in the node's
    plugins.d folder these tests run.
    """
    names = {row["component"] for row in client.cat.plugins(format="json")}  # type: ignore[attr-defined]
    if plugin not in names:
        pytest.skip(
            f"plugin {plugin} is not installed on the local node: Maven Central does not serve it; "
            "put its zip in the node's plugins.d folder to run this test (docs/architecture.md)"
        )


@pytest.fixture
def unique_name() -> str:
    """A lowercase name no other test uses, for indices, policies and repositories."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def audit_sink() -> Iterator[MemorySink]:
    """Each test runs with a fresh audit configuration whose records go to a new MemorySink.

    The previous configuration comes back afterwards, unclosed (this fixture only swaps
    it), and no request context leaks from one test into the next.
    """
    sink = MemorySink()
    previous = audit_config.use_config(audit_config.AuditConfig(sink=sink))
    token = audit_context.bind(None)
    try:
        yield sink
    finally:
        audit_context.unbind(token)
        configured = audit_config.use_config(previous)
        if configured is not None and configured.sink is not sink:
            configured.sink.close(timeout=2.0)  # a sink the test configured: stop its threads
