"""Helpers for integration tests: remove everything setup made under a prefix, find path.repo."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from opensearchpy import NotFoundError, TransportError

from audit_middleware.opensearch import chains, templates
from audit_middleware.opensearch.monitors import MONITORS, monitor_name


def path_repo(client: Any) -> Path:
    """The node's first ``path.repo`` folder, where fs snapshot repositories may live."""
    settings = client.nodes.info(metric="settings")["nodes"].popitem()[1]["settings"]
    return Path(settings["path"]["repo"][0])


def _quietly(call: Any) -> None:
    with contextlib.suppress(NotFoundError):
        call()


def remove_monitors(client: Any, prefix: str) -> None:
    """Delete the alert monitors named ``{prefix}-alert-*``."""
    body = {"size": 1000, "query": {"prefix": {"monitor.name.keyword": monitor_name(prefix, "")}}}
    try:
        hits = client.transport.perform_request("POST", f"{MONITORS}/_search", body=body)["hits"]["hits"]
    except (NotFoundError, TransportError):
        return  # no alerting plugin, or no monitor was ever made
    for hit in hits:
        _quietly(lambda hit=hit: client.transport.perform_request("DELETE", f"{MONITORS}/{hit['_id']}"))


def remove_policies(client: Any, prefix: str) -> None:
    """Delete the ISM policies ``{prefix}-*-retention``."""
    try:
        policies = client.transport.perform_request("GET", "/_plugins/_ism/policies", params={"size": 1000})
    except (NotFoundError, TransportError):
        return
    for entry in policies.get("policies", ()):
        policy = str(entry.get("_id", ""))
        if policy.startswith(f"{prefix}-") and policy.endswith("-retention"):
            _quietly(
                lambda policy=policy: client.transport.perform_request(
                    "DELETE", f"/_plugins/_ism/policies/{policy}"
                )
            )


def remove_layout(client: Any, prefix: str) -> None:
    """Everything setup and restores made under ``prefix``: streams, templates, policies, monitors."""
    remove_monitors(client, prefix)
    _quietly(lambda: client.indices.delete_data_stream(name=f"{prefix}-*"))
    for pattern in (f"{prefix}-*", f"restored-{prefix}-*"):
        _quietly(
            lambda pattern=pattern: client.indices.delete(index=pattern, params={"expand_wildcards": "all"})
        )
    _quietly(lambda: client.indices.delete_index_template(name=templates.index_template_name(prefix)))
    _quietly(lambda: client.cluster.delete_component_template(name=templates.component_template_name(prefix)))
    remove_policies(client, prefix)
    _quietly(lambda: client.indices.delete_data_stream(name=chains.checkpoints_stream(prefix)))
    _quietly(lambda: client.indices.delete_index_template(name=chains.checkpoints_template_name(prefix)))


def remove_repository(client: Any, name: str) -> None:
    """Delete a snapshot repository and its snapshots."""
    try:
        snapshots = client.snapshot.get(repository=name, snapshot="_all")["snapshots"]
    except NotFoundError:
        return
    for snapshot in snapshots:
        _quietly(
            lambda snapshot=snapshot: client.snapshot.delete(repository=name, snapshot=snapshot["snapshot"])
        )
    _quietly(lambda: client.snapshot.delete_repository(repository=name))
