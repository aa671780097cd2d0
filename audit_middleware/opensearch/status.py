"""What the cluster says about the audit trail: reachable, set up, and where each index is in ISM.

Counters of a running shipper live in its process (``OpenSearchSink.status()``), and
what waits on this host's disk is read by ``sinks.opensearch.backlog``; ``audit-middleware
status`` shows all three.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opensearchpy import NotFoundError, OpenSearch, TransportError

from audit_middleware.opensearch import errors
from audit_middleware.opensearch.client import build_client
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.opensearch.templates import index_template_name
from audit_middleware.opensearch.tiers import validate_name

__all__ = ["check_ready", "cluster_status", "ism_states"]

_ISM_PLUGIN = "opensearch-index-management"
_POLICY_KEYS = (
    "index.plugins.index_state_management.policy_id",
    "index.opendistro.index_state_management.policy_id",
)


def check_ready(client: OpenSearch, prefix: str) -> str | None:
    """Why records cannot be delivered yet (not set up), or None; client errors propagate."""
    name = index_template_name(prefix)
    if not client.indices.exists_index_template(name=name):
        return f"index template {name!r} is missing in OpenSearch: run `audit-middleware setup`"
    return None


def _row(stream: str, index: str, state: Mapping[str, Any]) -> dict[str, Any]:
    action = state.get("action") or {}
    step = state.get("step") or {}
    info = state.get("info") or {}
    return {
        "stream": stream,
        "index": index,
        "policy": next((state[key] for key in _POLICY_KEYS if state.get(key)), None),
        "state": (state.get("state") or {}).get("name"),
        "action": action.get("name"),
        "step": step.get("name"),
        "step_status": step.get("step_status"),
        "failed": bool(action.get("failed")),
        "message": info.get("message") or info.get("cause"),
    }


def ism_states(client: OpenSearch, prefix: str) -> list[dict[str, Any]]:
    """Each backing index of ``prefix``'s data streams and its ISM state, from the explain API.

    ``policy`` is None for an index ISM does not manage; ``state``/``action``/``step``
    are None until ISM has initialised the policy (its first job run, up to one job
    interval after the index was created).
    """
    try:
        streams = client.indices.get_data_stream(name=f"{validate_name(prefix, 'prefix')}-*")["data_streams"]
    except NotFoundError:
        return []
    rows: list[dict[str, Any]] = []
    for stream in sorted(streams, key=lambda found: str(found["name"])):
        backing = [index["index_name"] for index in stream["indices"]]
        explained: dict[str, Any] = {}
        for start in range(0, len(backing), 50):  # bounded URLs for streams with many indices
            names = ",".join(backing[start : start + 50])
            explained.update(client.transport.perform_request("GET", f"/_plugins/_ism/explain/{names}"))
        rows.extend(_row(stream["name"], index, explained.get(index) or {}) for index in backing)
    return rows


def cluster_status(settings: ConnectionSettings) -> dict[str, Any]:
    """Connection, set-up and ISM states; ``error`` is None when delivery can work.

    ``indices`` is None when the cluster has no ISM plugin (nothing manages retention).
    """
    report: dict[str, Any] = {"urls": list(settings.urls), "prefix": settings.prefix, "indices": None}
    client = build_client(settings, max_retries=0)
    try:
        report["opensearch_version"] = client.info()["version"]["number"]
        report["error"] = check_ready(client, settings.prefix)
        plugins = {row.get("component") for row in client.cat.plugins(format="json")}
        if _ISM_PLUGIN in plugins:
            report["indices"] = ism_states(client, settings.prefix)
    except TransportError as exc:
        report["error"] = errors.describe(exc, "read the cluster's set-up", client=client)
    finally:
        client.close()
    return report
