"""A cluster that loses a node: three local nodes, replicas 1, one killed with kill -9 mid-stream.

``ClusterScenario`` starts the cluster (``node.py cluster``, HTTP 9211-9213) when the
session starts. The sink is given every node's URL; the node holding the write index's
primary shard is killed while records stream in, then started again.
"""

from __future__ import annotations

import threading
import time

import pytest
from opensearchpy import OpenSearch

from audit_middleware import Actor, Resource
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.opensearch.provisioning import SetupConfig, apply
from audit_middleware.processing.redaction import Redactor
from audit_middleware.sinks.delivery import deliver
from audit_middleware.sinks.opensearch.shipper import ShipperOptions
from audit_middleware.sinks.opensearch.sink import OpenSearchSink
from tests.integration.layout import remove_layout
from tests.integration.scenarios import make_event

pytestmark = [pytest.mark.opensearch, pytest.mark.slow]

RATE = 50  # records per second, a steady stream


def _all_ids(client: OpenSearch, pattern: str) -> list[str]:
    """Every stored document id under ``pattern`` (duplicates included), in pages."""
    client.indices.refresh(index=pattern)
    ids: list[str] = []
    after = None
    while True:
        body = {"size": 5000, "_source": False, "sort": [{"@timestamp": "asc"}, {"event.id": "asc"}]}
        if after is not None:
            body["search_after"] = after
        hits = client.search(index=pattern, body=body)["hits"]["hits"]
        if not hits:
            return ids
        ids += [hit["_id"] for hit in hits]
        after = hits[-1]["sort"]


def test_kill_9_of_a_node_mid_stream_loses_and_duplicates_nothing(cluster_run, unique_name, tmp_path):
    """Records stream to 3 nodes (replicas 1); the primary's node is killed with kill -9 and brought
    back: stored documents = distinct ids = records sent, and ISM still manages the indices."""
    urls = cluster_run.milestones.wait("green", 10 * 60)["urls"]
    node = cluster_run.node
    client = OpenSearch(urls, timeout=60)
    prefix = unique_name
    try:
        apply(client, SetupConfig(prefix=prefix, replicas=1, alert_rules=()))
        client.cluster.health(
            index=f"{prefix}-*", wait_for_status="green", params={"timeout": "120s", "request_timeout": 130}
        )
        settings = ConnectionSettings(urls=tuple(urls), prefix=prefix, timeout=5.0)
        options = ShipperOptions(flush_interval=0.1, backoff_base=0.1, backoff_max=2.0, request_timeout=5.0)
        sink = OpenSearchSink(settings=settings, state_dir=tmp_path, options=options)
        sent: list[str] = []
        stop = threading.Event()

        def produce() -> None:
            n = 0
            actor = Actor(email="ops@acme.example")
            while not stop.is_set():
                event = make_event("restart", actor=actor, tenant="acme", resource=Resource("vm", f"vm-{n}"))
                deliver(event, sink, Redactor())
                sent.append(event.id)
                n += 1
                time.sleep(1 / RATE)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        time.sleep(5)
        (write_index,) = [
            i["index_name"]
            for i in client.indices.get_data_stream(name=f"{prefix}-standard")["data_streams"][0]["indices"]
        ][-1:]
        shards = client.cat.shards(index=write_index, format="json", h="prirep,node")
        victim_name = next(row["node"] for row in shards if row["prirep"] == "p")
        victim = int(victim_name.removeprefix("node-"))
        before_kill = len(sent)
        node.cluster_kill(victim, wait_left=True)
        time.sleep(10)  # the stream goes on while the node is gone
        during = len(sent) - before_kill
        node.cluster_start_node(victim)
        time.sleep(5)
        stop.set()
        producer.join(10)
        assert sink.flush(120), sink.status()
        status = sink.status()
        sink.close(10)
        ids = _all_ids(client, f"{prefix}-*")
        cluster_run.milestones.note(
            "node kill",
            sent=len(sent),
            sent_while_down=during,
            killed=victim_name,
            stored=len(ids),
            distinct=len(set(ids)),
            retried=status["retried"],
            spooled=status["spooled"],
        )
        assert len(ids) == len(set(ids)) == len(sent)
        assert set(ids) == set(sent)
        assert during > 0
        assert status["dead_lettered"] == 0
        deadline = time.monotonic() + 180
        state = None
        while time.monotonic() < deadline and state is None:
            explained = client.transport.perform_request("GET", f"/_plugins/_ism/explain/{prefix}-standard")
            state = (explained.get(write_index, {}).get("state") or {}).get("name")
            time.sleep(0 if state else 3)
        assert state == "hot", explained
    finally:
        remove_layout(client, prefix)
        client.close()
