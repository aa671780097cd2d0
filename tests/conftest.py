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
from audit_middleware.capture import context as audit_context
from audit_middleware.capture.changes import REGISTRY
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.sinks import MemorySink
from audit_middleware.sinks.sqlite import SQLiteSink

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


def node_ready() -> bool:
    """Whether the local node answers, starting it when Java is here and it is down.

    False without Java on a developer machine (the integration tests then skip); under
    CI=true a missing Java fails the run.
    """
    client = OpenSearch([OPENSEARCH_URL], timeout=60)
    try:
        if _node_answers(client):
            return True
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            if _under_ci():
                pytest.fail("CI=true but Java is missing: the OpenSearch integration tests cannot run")
            return False
        subprocess.run([sys.executable, str(NODE_SCRIPT), "start"], check=True, env=_node_environment())
        return True
    finally:
        client.close()


def _node_environment() -> dict[str, str]:
    """The environment for starting the node: the plugin folder ``make test`` would pass.

    Without it, a ``pytest`` run outside ``make`` would re-assemble the shared install
    without ISM and Alerting, and every later run would find them missing.
    """
    environment = dict(os.environ)
    shared = ROOT.parent / "shared" / "opensearch-plugins"
    if not environment.get("AUDIT_OPENSEARCH_PLUGINS_DIR") and shared.is_dir():
        environment["AUDIT_OPENSEARCH_PLUGINS_DIR"] = str(shared)
    return environment


@pytest.fixture(scope="session")
def opensearch() -> Iterator[object]:
    """A client for the running local node; starts it when Java is here and it is down.

    Skips when Java is missing on a developer machine; fails under CI=true, where the
    integration tests must run.
    """
    if not node_ready():
        pytest.skip("Java is not installed: skipping tests that need the local OpenSearch node")
    client = OpenSearch([OPENSEARCH_URL], timeout=60)
    yield client
    client.close()


def require_plugin(client: object, plugin: str) -> None:
    """Skip, naming the reason, when the local node lacks an OpenSearch plugin; under CI=true, fail.

    The ISM and Alerting plugin zips are not published to Maven Central, from which the
    local node is assembled (see docs/architecture.md): ``make test`` installs them from
    ``../shared/opensearch-plugins`` (``AUDIT_OPENSEARCH_PLUGINS_DIR``).
    """
    names = {row["component"] for row in client.cat.plugins(format="json")}  # type: ignore[attr-defined]
    if plugin in names:
        return
    message = (
        f"plugin {plugin} is not installed on the local node: point AUDIT_OPENSEARCH_PLUGINS_DIR at the "
        "folder of its zip (make test uses ../shared/opensearch-plugins) and restart the node"
    )
    if _under_ci():
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


def require_shared_file(path: Path) -> None:
    """Skip when a file of the shared folder beside the checkout is absent; under CI=true, fail."""
    if path.is_file():
        return
    if _under_ci():
        pytest.fail(f"CI=true but {path} is missing: the shared folder must sit beside the checkout")
    pytest.skip(f"{path} is outside this checkout")


@pytest.fixture
def unique_name() -> str:
    """A lowercase name no other test uses, for indices, policies and repositories."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def fallback_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Last-resort files of a test go below a temporary directory, never the user's state dir."""
    directory = tmp_path_factory.mktemp("fallback")
    monkeypatch.setenv("AUDIT_FALLBACK_DIR", str(directory))
    return directory


@pytest.fixture(autouse=True)
def audit_sink() -> Iterator[MemorySink]:
    """Each test runs with a fresh audit configuration whose records go to a new MemorySink.

    The previous configuration comes back afterwards, unclosed (this fixture only swaps
    it), and no request context leaks from one test into the next. Each test starts
    with no registered models (ORM capture off) and leaves the registrations it found.
    """
    sink = MemorySink()
    previous = audit_config.use_config(audit_config.AuditConfig(sink=sink))
    token = audit_context.bind(None)
    registrations = REGISTRY.snapshot()
    REGISTRY.clear()
    try:
        yield sink
    finally:
        REGISTRY.restore(registrations)
        audit_context.unbind(token)
        configured = audit_config.use_config(previous)
        if configured is not None and configured.sink is not sink:
            configured.sink.close(timeout=2.0)  # a sink the test configured: stop its threads


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    """An empty SQLite store (for tests of what only the SQLite store does)."""
    store = SQLiteStore(tmp_path / "audit.sqlite3")
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def sqlite_sink(tmp_path: Path) -> Iterator[SQLiteSink]:
    """A sink writing the file that ``sqlite_store`` reads."""
    sink = SQLiteSink(tmp_path / "audit.sqlite3")
    try:
        yield sink
    finally:
        sink.close()
