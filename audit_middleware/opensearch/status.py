"""What the cluster says about the audit trail: reachable, set up, and which version.

Counters of a running shipper live in its process (``OpenSearchSink.status()``), and
what waits on this host's disk is read by ``sinks.opensearch.backlog``; ``audit-middleware
status`` shows all three.
"""

from __future__ import annotations

from typing import Any

from opensearchpy import OpenSearch, TransportError

from audit_middleware.opensearch import errors
from audit_middleware.opensearch.client import build_client
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.opensearch.templates import index_template_name

__all__ = ["check_ready", "cluster_status"]


def check_ready(client: OpenSearch, prefix: str) -> str | None:
    """Why records cannot be delivered yet (not set up), or None; client errors propagate."""
    name = index_template_name(prefix)
    if not client.indices.exists_index_template(name=name):
        return f"index template {name!r} is missing in OpenSearch: run `audit-middleware setup`"
    return None


def cluster_status(settings: ConnectionSettings) -> dict[str, Any]:
    """Connection and set-up; ``error`` is None when delivery can work."""
    report: dict[str, Any] = {"urls": list(settings.urls), "prefix": settings.prefix}
    client = build_client(settings, max_retries=0)
    try:
        report["opensearch_version"] = client.info()["version"]["number"]
        report["error"] = check_ready(client, settings.prefix)
    except TransportError as exc:
        report["error"] = errors.describe(exc, "read the cluster's set-up", client=client)
    finally:
        client.close()
    return report
