"""The plain WSGI and ASGI examples: one line of auditing, records for what the API did.

Each example is driven in-process (WSGI through ``wsgiref.validate``, ASGI through
httpx's ASGI transport) and once as a real server process (wsgiref / uvicorn) whose
records arrive as JSON lines on its standard output.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from wsgiref.validate import validator

import httpx
import pytest
from starlette.testclient import TestClient

from audit_middleware.sinks import MemorySink
from integrations import asgi_app, wsgi_app
from tests.conftest import ROOT

ALICE = {"Authorization": "Bearer demo-token-alice"}
BOB = {"Authorization": "Bearer demo-token-bob"}


def _scenario(client: httpx.Client) -> str:
    """Create, start, update and delete a pod; a stranger's attempt on it; returns its id."""
    pod = client.post("/pods", json={"name": "web", "image": "nginx:1.27"}, headers=ALICE).json()
    assert client.post(f"/pods/{pod['id']}/start", headers=ALICE).status_code == 200
    assert (
        client.patch(f"/pods/{pod['id']}", json={"spec": {"image": "nginx:1.28"}}, headers=ALICE).status_code
        == 200
    )
    assert client.delete(f"/pods/{pod['id']}", headers=BOB).status_code == 404  # another tenant's pod
    assert client.delete(f"/pods/{pod['id']}", headers=ALICE).status_code == 204
    assert client.get("/pods", headers=ALICE).status_code == 200  # a read: not audited
    return str(pod["id"])


def _check(documents: list[dict[str, object]], pod_id: str) -> None:
    actions = [(d["event"]["action"], d["event"]["outcome"]) for d in documents]  # type: ignore[index]
    assert actions == [
        ("create", "success"),
        ("start", "success"),
        ("update", "success"),
        ("delete", "failure"),
        ("delete", "success"),
    ]
    alice = [d for d in documents if d["user"].get("name") == "alice"]  # type: ignore[attr-defined]
    assert len(alice) == 4
    assert all(d["organization"]["id"] == "acme" for d in alice)  # type: ignore[index]
    assert all(d["audit"]["resource"]["id"] == pod_id for d in documents)  # type: ignore[index]
    update = documents[2]["audit"]["changes"]  # type: ignore[index]
    assert update["fields"] == ["spec.image"]
    assert update["before"]["spec"]["image"] == "nginx:1.27"


def test_wsgi_example_records_what_the_api_did():
    """Through wsgiref.validate, every state change of the WSGI example is one record."""
    sink = MemorySink()
    app = validator(wsgi_app.create_app(sink=sink))
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://test") as client:
        pod_id = _scenario(client)
    _check(sink.documents(), pod_id)


def test_asgi_example_records_what_the_api_did():
    """Through Starlette's test client (an ASGI transport), every state change is one record."""
    sink = MemorySink()
    with TestClient(asgi_app.create_app(sink=sink), base_url="http://test") as client:
        pod_id = _scenario(client)
    _check(sink.documents(), pod_id)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(params=["wsgi", "asgi"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The example as a real server process on 127.0.0.1, its records on stdout."""
    port = _free_port()
    if request.param == "wsgi":
        command = [sys.executable, "-m", "integrations.wsgi_app"]
    else:
        command = [
            sys.executable, "-m", "uvicorn", "--factory", "integrations.asgi_app:create_app",
            "--port", str(port), "--log-level", "warning",
        ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, "PORT": str(port)}, stdout=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(base + "/pods", timeout=0.5)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    try:
        yield base, process
    finally:
        process.terminate()
        process.wait(10)


def test_examples_run_as_real_servers(server: tuple[str, subprocess.Popen[str]]):
    """Both examples audit the same way when served by a real server process."""
    base, process = server
    with httpx.Client(base_url=base) as client:
        pod_id = _scenario(client)
    process.terminate()
    out, _ = process.communicate(timeout=10)
    documents = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    _check(documents, pod_id)
