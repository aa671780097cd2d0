"""Celery example: a task queued by a request records what it did, as the user who queued it.

Run a worker (a filesystem broker: no server needed; records go to ``AUDIT_LOG_FILE``)::

    AUDIT_CELERY_DIR=/tmp/audit-celery AUDIT_LOG_FILE=/tmp/audit.jsonl \\
        python -m celery -A integrations.celery_app worker -P solo

and queue ``app.tasks[RESTART].delay("pod-1")`` from a request of an audited app (or inside
``audit_context(...)``): the task's record names that request's user, tenant, request id
and trace id. The audit set-up is one line: ``install()``.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

from audit_middleware import Resource, record
from audit_middleware.frameworks.celery import install

install()  # the audit context travels with every task this process queues or runs

RESTART = "integrations.celery_app.restart_pod"


def restart_pod(pod_id: str) -> str:
    """Restart a pod; the record is by whoever queued the task."""
    record("restart", resource=Resource("pod", pod_id), details={"by": "worker"})
    return pod_id


def create_app(directory: Path, *, eager: bool = False) -> Celery:
    """A Celery app whose broker and results are folders under ``directory``."""
    queue = directory / "queue"
    for folder in (queue, directory / "processed", directory / "results"):
        folder.mkdir(parents=True, exist_ok=True)
    celery = Celery("audit_example", broker="filesystem://", backend=f"file://{directory / 'results'}")
    celery.conf.update(
        broker_transport_options={
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "processed_folder": str(directory / "processed"),
        },
        task_always_eager=eager,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
    )
    celery.task(name=RESTART)(restart_pod)
    return celery


app = create_app(Path(os.environ.get("AUDIT_CELERY_DIR", ".audit/celery")))
