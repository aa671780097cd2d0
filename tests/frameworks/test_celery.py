"""Celery: the actor, tenant, request id and trace id travel from the request to the task.

Through the example's app (``integrations/celery_app.py``), run eagerly in this process
and by a real worker process in solo mode, on a filesystem broker (no network at all).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("celery")

from audit_middleware import Actor, Scope, audit_context, set_actor, set_tenant
from audit_middleware.frameworks.celery import HEADER, _decode, carried
from integrations import celery_app as example
from tests.conftest import ROOT
from tests.wsgi_support import request, simple_app

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ANN = Actor(id="u-7", name="ann", email="ann@acme.example", roles=("admin",))


def queue_in_request(task: Any, results: list[Any]) -> None:
    """A request by ann in acme queues the task (and says nothing else)."""

    def handle(environ: dict[str, Any]) -> None:
        set_actor(ANN)
        set_tenant("acme")
        results.append(task.delay("pod-1"))

    request(
        simple_app(action=handle),
        "POST",
        "/pods/pod-1/restart",
        headers={"X-Request-ID": "req-restart-1", "traceparent": TRACEPARENT},
    )


def test_eager_task_records_as_the_requests_user(tmp_path: Path, audit_sink: Any) -> None:
    """Run eagerly, the task's record is its own, by the request's user, with its ids."""
    celery = example.create_app(tmp_path, eager=True)
    results: list[Any] = []
    queue_in_request(celery.tasks[example.RESTART], results)
    assert results[0].get() == "pod-1"
    task_record, request_record = audit_sink.events
    assert task_record.action.id == "restart"
    assert task_record.details == {"by": "worker"}
    assert task_record.actor == ANN
    assert task_record.tenant == Scope("acme")
    assert task_record.request is not None
    assert task_record.request.request_id == "req-restart-1"
    assert task_record.request.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert task_record.request.path is None  # not the request's record
    assert request_record.request is not None
    assert request_record.request.path == "/pods/pod-1/restart"  # the request keeps its own record


def test_eager_task_outside_a_request_takes_the_callers_context(tmp_path: Path, audit_sink: Any) -> None:
    """A task run eagerly inside audit_context() is by that context's actor."""
    celery = example.create_app(tmp_path, eager=True)
    cron = Actor(id="cron", kind="service")
    with audit_context(actor=cron, tenant="globex"):
        celery.tasks[example.RESTART].delay("pod-2").get()
    (event,) = audit_sink.events
    assert (event.actor, event.tenant) == (cron, Scope("globex"))


def test_nothing_to_carry_outside_requests_and_contexts() -> None:
    """With neither a request nor a context, a task carries no header."""
    assert carried() is None


def test_a_malformed_header_is_read_as_far_as_it_is_sound() -> None:
    """Values of the wrong shape are left out, never trusted or raised on."""
    decoded = _decode(
        {
            "actor": {"id": "u-1", "kind": "root"},
            "tenant": {"id": 7},
            "request_id": "r" * 5000,
            "trace_id": "t-1",
        }
    )
    assert decoded == {"trace_id": "t-1"}
    assert _decode({"actor": {"id": "u-1", "roles": ["a", 3]}})["actor"] == Actor(id="u-1", roles=("a",))


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A real Celery worker process (solo pool) on the example app, recording into a JSON-lines file."""
    log = tmp_path / "worker-audit.jsonl"
    env = {
        **os.environ,
        "AUDIT_CELERY_DIR": str(tmp_path / "celery"),
        "AUDIT_LOG_FILE": str(log),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("AUDIT_OPENSEARCH_URL", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "integrations.celery_app",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield tmp_path / "celery", log
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stderr is not None:
            process.stderr.close()


def test_worker_task_records_as_the_requests_user(worker: tuple[Path, Path], audit_sink: Any) -> None:
    """Through the broker, a solo worker's record names the request's user, tenant, request and trace id."""
    directory, log = worker
    producer = example.create_app(directory)
    results: list[Any] = []
    queue_in_request(producer.tasks[example.RESTART], results)
    assert results[0].get(timeout=60) == "pod-1"
    deadline = time.monotonic() + 30
    while not (log.exists() and log.read_text(encoding="utf-8").strip()) and time.monotonic() < deadline:
        time.sleep(0.2)
    (line,) = log.read_text(encoding="utf-8").splitlines()
    document = json.loads(line)
    assert document["event"]["action"] == "restart"
    assert document["user"] == {"id": "u-7", "name": "ann", "email": "ann@acme.example", "roles": ["admin"]}
    assert document["organization"] == {"id": "acme"}
    assert document["http"]["request"]["id"] == "req-restart-1"
    assert document["trace"]["id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    request_record = audit_sink.events[-1]  # the request's own record, in this process
    assert request_record.request is not None
    assert request_record.request.request_id == "req-restart-1"


def test_the_header_is_attached_when_a_task_is_published(tmp_path: Path) -> None:
    """before_task_publish adds the header to the message of a task queued in a context."""
    from celery import signals  # noqa: PLC0415 - only this test sends the signal by hand

    headers: dict[str, Any] = {}
    with audit_context(actor=ANN, request_id="req-9"):
        signals.before_task_publish.send(
            sender="integrations.celery_app.restart_pod", headers=headers, body=()
        )
    assert headers[HEADER]["actor"]["id"] == "u-7"
    assert headers[HEADER]["request_id"] == "req-9"
