"""Realistic audit events for the delivery benchmarks: an update of a pod, with its request."""

from __future__ import annotations

import time

from audit_middleware.model.actions import CATALOG
from audit_middleware.model.event import Actor, AuditEvent, ChangeSet, RequestFacts, Resource, Scope
from audit_middleware.model.ids import uuid7

TENANTS = tuple(f"tenant-{i}" for i in range(10))
_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
)


def sample_event(i: int) -> AuditEvent:
    """One event as the middleware would send it (about 1 KB of JSON)."""
    unix_ms = time.time_ns() // 1_000_000
    return AuditEvent(
        id=uuid7(unix_ms),
        unix_ms=unix_ms,
        action=CATALOG.get("update"),
        actor=Actor(
            id=str(1000 + i % 50), name=f"user{i % 50}", email=f"user{i % 50}@example.com", roles=("admin",)
        ),
        resource=Resource("pod", f"pod-{i}", f"web-{i % 100}"),
        changes=ChangeSet(
            before={"replicas": 2, "image": "nginx:1.26", "labels": {"team": "core"}},
            after={"replicas": 3, "image": "nginx:1.27", "labels": {"team": "core"}},
            fields=("image", "replicas"),
        ),
        details={"reason": "scale up", "ticket": f"OPS-{i % 997}"},
        tenant=Scope(TENANTS[i % len(TENANTS)]),
        project=Scope(f"project-{i % 20}"),
        request=RequestFacts(
            method="PATCH",
            path=f"/pods/pod-{i}",
            route="/pods/<pod_id>",
            request_id=f"{i:032x}",
            status_code=200,
            client_ip="203.0.113.7",
            user_agent=_USER_AGENT,
        ),
    )


def sample_events(count: int) -> list[AuditEvent]:
    """``count`` distinct events (fresh ids each call)."""
    return [sample_event(i) for i in range(count)]
