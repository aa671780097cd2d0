"""The local node is a real OpenSearch with the plugins the product relies on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import require_plugin

pytestmark = pytest.mark.opensearch


def test_node_is_opensearch_2_19(opensearch):
    """The node answers as OpenSearch 2.19.x."""
    info = opensearch.info()
    assert info["version"]["distribution"] == "opensearch"
    assert info["version"]["number"].startswith("2.19.")


def test_job_scheduler_plugin_is_loaded(opensearch):
    """_cat/plugins lists the job-scheduler plugin, loaded as a real bundle."""
    names = {row["component"] for row in opensearch.cat.plugins(format="json")}
    assert "opensearch-job-scheduler" in names


def test_standard_modules_are_loaded_as_bundles(opensearch):
    """The modules the product uses (painless, analysis, mapper extras, reindex) are loaded."""
    nodes = opensearch.nodes.info(metric="plugins")["nodes"]
    modules = {m["name"] for node in nodes.values() for m in node["modules"]}
    assert {"lang-painless", "analysis-common", "mapper-extras", "reindex", "transport-netty4"} <= modules


def test_painless_script_runs(opensearch, unique_name):
    """A painless script field computes a value, proving lang-painless works under the launcher."""
    opensearch.index(index=unique_name, body={"n": 20}, refresh=True)
    try:
        hits = opensearch.search(
            index=unique_name,
            body={"script_fields": {"double": {"script": {"source": "doc['n'].value * 2"}}}},
        )["hits"]["hits"]
        assert hits[0]["fields"]["double"] == [40]
    finally:
        opensearch.indices.delete(index=unique_name)


def test_ism_policy_attaches_through_ism_template(opensearch, unique_name):
    """An ISM policy with an ism_template manages a newly created matching index."""
    require_plugin(opensearch, "opensearch-index-management")
    policy = {
        "policy": {
            "description": "test",
            "default_state": "hot",
            "states": [{"name": "hot", "actions": [], "transitions": []}],
            "ism_template": [{"index_patterns": [f"{unique_name}-*"], "priority": 100}],
        }
    }
    opensearch.transport.perform_request("PUT", f"/_plugins/_ism/policies/{unique_name}", body=policy)
    index = f"{unique_name}-000001"
    opensearch.indices.create(index=index)
    try:
        # ISM attaches asynchronously, on the cluster-state change of the index creation
        deadline = time.monotonic() + 60
        attached = None
        while attached is None and time.monotonic() < deadline:
            explain = opensearch.transport.perform_request("GET", f"/_plugins/_ism/explain/{index}")
            attached = explain[index].get("index.plugins.index_state_management.policy_id")
            time.sleep(0 if attached else 0.5)
        assert attached == unique_name
    finally:
        opensearch.indices.delete(index=index)
        opensearch.transport.perform_request("DELETE", f"/_plugins/_ism/policies/{unique_name}")


def test_fs_snapshot_repository_and_snapshot(opensearch, unique_name):
    """An fs repository under path.repo registers and a snapshot of an index completes."""
    repo_root = Path(
        opensearch.nodes.info(metric="settings")["nodes"].popitem()[1]["settings"]["path"]["repo"][0]
    )
    opensearch.index(index=unique_name, body={"kept": True}, refresh=True)
    location = repo_root / unique_name
    opensearch.snapshot.create_repository(
        repository=unique_name, body={"type": "fs", "settings": {"location": str(location)}}
    )
    try:
        result = opensearch.snapshot.create(
            repository=unique_name, snapshot="snap-1", body={"indices": unique_name}, wait_for_completion=True
        )
        assert result["snapshot"]["state"] == "SUCCESS"
        assert result["snapshot"]["indices"] == [unique_name]
        assert any(location.iterdir())
    finally:
        opensearch.snapshot.delete(repository=unique_name, snapshot="snap-1")
        opensearch.snapshot.delete_repository(repository=unique_name)
        opensearch.indices.delete(index=unique_name)


def test_alerting_monitor_executes(opensearch, unique_name):
    """An alerting query monitor can be created and run with _execute."""
    require_plugin(opensearch, "opensearch-alerting")
    opensearch.index(index=unique_name, body={"action": "login_failed"}, refresh=True)
    monitor = {
        "type": "monitor",
        "name": unique_name,
        "enabled": False,
        "schedule": {"period": {"interval": 1, "unit": "MINUTES"}},
        "inputs": [{"search": {"indices": [unique_name], "query": {"query": {"match_all": {}}}}}],
        "triggers": [
            {
                "name": "any",
                "severity": "1",
                "condition": {
                    "script": {"source": "ctx.results[0].hits.total.value > 0", "lang": "painless"}
                },
                "actions": [],
            }
        ],
    }
    created = opensearch.transport.perform_request("POST", "/_plugins/_alerting/monitors", body=monitor)
    try:
        run = opensearch.transport.perform_request(
            "POST", f"/_plugins/_alerting/monitors/{created['_id']}/_execute"
        )
        assert run["trigger_results"][next(iter(run["trigger_results"]))]["triggered"] is True
    finally:
        opensearch.transport.perform_request("DELETE", f"/_plugins/_alerting/monitors/{created['_id']}")
        opensearch.indices.delete(index=unique_name)
