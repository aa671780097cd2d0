"""Delivery into the real node: mappings, replay safety, outages, faults, dead letters."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
from opensearchpy import OpenSearch
from werkzeug.test import Client

import audit_middleware
from audit_middleware import AuditMiddleware, Resource, Scope, record
from audit_middleware.model.event import RequestFacts
from audit_middleware.model.ids import uuid7
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.opensearch.provisioning import SetupConfig, apply
from audit_middleware.sinks.opensearch.shipper import ShipperOptions
from audit_middleware.sinks.opensearch.sink import OpenSearchSink
from tests.conftest import OPENSEARCH_URL, ROOT
from tests.integration.faultproxy import FaultProxy
from tests.integration.layout import remove_layout

pytestmark = pytest.mark.opensearch

UUID_LINE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")
FAST = ShipperOptions(flush_interval=0.1, backoff_base=0.05, backoff_max=0.5, request_timeout=2.0)


@pytest.fixture
def layout(opensearch, unique_name):
    """A freshly set-up prefix (templates and data streams), removed afterwards."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a node without ISM would warn that retention is unmanaged
        apply(opensearch, SetupConfig(prefix=unique_name, replicas=0, require_ism=False, alert_rules=()))
    yield unique_name
    remove_layout(opensearch, unique_name)


def make_sink(prefix: str, state_dir: Path, url: str = OPENSEARCH_URL, **kwargs) -> OpenSearchSink:
    settings = ConnectionSettings(urls=(url,), prefix=prefix, timeout=2.0)
    return OpenSearchSink(
        settings=settings, state_dir=state_dir, options=kwargs.pop("options", FAST), **kwargs
    )


def stored_ids(client, prefix: str) -> list[str]:
    client.indices.refresh(index=f"{prefix}-*")
    hits = client.search(index=f"{prefix}-*", body={"size": 10_000, "_source": False})["hits"]["hits"]
    return [hit["_id"] for hit in hits]


def app(environ, start_response):
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [b"ok"]


def test_middleware_records_land_with_the_template_types(opensearch, layout, tmp_path):
    """Requests through the middleware end as documents whose fields have the mapped types."""
    sink = make_sink(layout, tmp_path)
    audit_middleware.configure(sink=sink, trusted_proxies=1, tenant_resolver=lambda environ: "acme")
    client = Client(AuditMiddleware(app))
    for n in range(5):
        client.post(f"/pods/{n}", headers={"X-Forwarded-For": "203.0.113.7", "User-Agent": "pytest"}).close()
    assert sink.flush(10)
    ids = stored_ids(opensearch, layout)
    assert len(ids) == 5
    hits = opensearch.search(index=f"{layout}-standard", body={"query": {"ids": {"values": [ids[0]]}}})
    source = hits["hits"]["hits"][0]["_source"]
    assert source["source"]["ip"] == "203.0.113.7"
    assert source["organization"]["id"] == "acme"
    assert source["audit"]["tier"] == "standard"
    mapping = opensearch.indices.get_mapping(index=f"{layout}-standard")
    properties = next(iter(mapping.values()))["mappings"]["properties"]
    assert properties["@timestamp"]["type"] == "date"
    assert properties["source"]["properties"]["ip"]["type"] == "ip"
    assert properties["audit"]["properties"]["changes"]["properties"]["before"]["type"] == "flat_object"
    assert properties["http"]["properties"]["response"]["properties"]["status_code"]["type"] == "long"
    sink.close(5)


def test_replaying_the_same_events_leaves_the_count_unchanged(opensearch, layout, tmp_path):
    """The same events sent twice are stored once: create with _id = event.id makes replays 409s."""
    sink = make_sink(layout, tmp_path)
    audit_middleware.configure(sink=sink)
    events = [record("create", resource=Resource("pod", str(n))) for n in range(20)]
    assert sink.flush(10)
    for event in events:
        sink.emit(event)
    assert sink.flush(10)
    assert sorted(stored_ids(opensearch, layout)) == sorted(e.id for e in events)
    assert sink.status()["conflicts"] == 20
    sink.close(5)


def test_tenant_tier_routes_records_to_the_extended_stream(opensearch, layout, tmp_path):
    """A tenant mapped to the extended tier lands in the extended data stream."""
    router = SetupConfig(prefix=layout).router(tenant_tiers={"bigcorp": "extended"})
    sink = make_sink(layout, tmp_path, router=router)
    audit_middleware.configure(sink=sink)
    big = record("delete", resource=Resource("pod", "1"), tenant=Scope("bigcorp"))
    small = record("delete", resource=Resource("pod", "2"), tenant=Scope("smallco"))
    assert sink.flush(10)
    opensearch.indices.refresh(index=f"{layout}-*")
    assert (
        opensearch.count(index=f"{layout}-extended", body={"query": {"ids": {"values": [big.id]}}})["count"]
        == 1
    )
    assert (
        opensearch.count(index=f"{layout}-standard", body={"query": {"ids": {"values": [small.id]}}})["count"]
        == 1
    )
    sink.close(5)


def test_rejected_documents_are_dead_lettered_and_the_rest_delivered(opensearch, layout, tmp_path):
    """A document whose value conflicts with the mapping goes to the dead-letter file with the reason."""
    sink = make_sink(layout, tmp_path)
    audit_middleware.configure(sink=sink)
    good = record("create", resource=Resource("pod", "good"))
    # an event as another version of the app might have built it: a text status code
    bad = replace(good, id=uuid7(), request=RequestFacts(status_code="not-a-number"))  # type: ignore[arg-type]
    sink.emit(bad)
    assert sink.flush(10)
    assert set(stored_ids(opensearch, layout)) == {good.id}
    letters = [json.loads(line) for line in (tmp_path / "dead-letter.jsonl").read_text().splitlines()]
    assert len(letters) == 1
    assert letters[0]["status"] == 400
    assert "mapper_parsing_exception" in letters[0]["reason"]
    assert letters[0]["document"]["event"]["id"] == bad.id
    assert sink.status()["dead_lettered"] == 1
    sink.close(5)


def spooled_status(sink: OpenSearchSink) -> dict:
    """Record one event, and return the sink's status once it has been spooled."""
    audit_middleware.configure(sink=sink)
    record("create", resource=Resource("pod", "1"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sink.status()["spool_records"] == 0:
        time.sleep(0.05)
    return sink.status()


def test_missing_setup_is_reported_and_records_are_spooled(opensearch, unique_name, tmp_path):
    """Without `setup`, status names the problem and records wait in the spool, not in OpenSearch."""
    sink = make_sink(unique_name, tmp_path)
    status = spooled_status(sink)
    assert "audit-middleware setup" in status["error"]
    assert status["spool_records"] == 1
    assert not opensearch.indices.exists(index=f"{unique_name}-standard")
    sink.close(1)


def test_unreachable_url_is_reported_and_records_are_spooled(tmp_path):
    """A URL where nothing listens gives one clear error in status; the record is spooled."""
    sink = make_sink("audit", tmp_path, url="http://127.0.0.1:9")
    status = spooled_status(sink)
    assert "cannot reach OpenSearch" in status["error"]
    assert status["spool_records"] == 1
    assert status["healthy"] is False
    sink.close(1)


def test_torn_connection_and_lost_answer_deliver_exactly_once(opensearch, layout, tmp_path):
    """A torn request and an answer lost after indexing both end with each event stored once."""
    proxy = FaultProxy("127.0.0.1", int(OPENSEARCH_URL.rsplit(":", 1)[1])).start()
    sink = make_sink(layout, tmp_path, url=proxy.url)
    audit_middleware.configure(sink=sink)
    record("create", resource=Resource("pod", "warmup"))
    assert sink.flush(10)
    proxy.set_mode("tear")
    torn = [record("create", resource=Resource("pod", f"t{n}")) for n in range(10)]
    time.sleep(0.5)
    proxy.set_mode("swallow_response")
    swallowed = [record("create", resource=Resource("pod", f"s{n}")) for n in range(10)]
    time.sleep(3)  # longer than the 2 s request timeout: the node indexed, the client gave up
    proxy.set_mode("forward")
    assert sink.flush(30)
    ids = stored_ids(opensearch, layout)
    assert len(ids) == len(set(ids)) == 21
    assert {e.id for e in torn + swallowed} <= set(ids)
    assert sink.status()["retried"] > 0
    sink.close(5)
    proxy.stop()


def _copies(client, stream: str, ids: list[str]) -> list[dict]:
    client.indices.refresh(index=stream)
    body = {"size": 1000, "query": {"ids": {"values": ids}}, "_source": False}
    return client.search(index=stream, body=body)["hits"]["hits"]


@pytest.mark.parametrize("check", [True, False], ids=["checked", "unchecked"])
def test_a_retry_across_a_rollover(opensearch, layout, tmp_path, check):
    """A bulk the node applied but whose answer was lost, retried after the stream rolled over:
    with the check before re-sending, each event stays stored once (found in the old index);
    without it, each gets a second copy in the new write index (_id is unique per index only)."""
    stream = f"{layout}-standard"
    proxy = FaultProxy("127.0.0.1", int(OPENSEARCH_URL.rsplit(":", 1)[1])).start()
    sink = make_sink(layout, tmp_path, url=proxy.url, options=replace(FAST, check_before_resend=check))
    audit_middleware.configure(sink=sink)
    record("create", resource=Resource("pod", "warmup"))
    assert sink.flush(10)
    proxy.set_mode("swallow_response")
    events = [record("delete", resource=Resource("pod", f"p{n}")) for n in range(20)]
    ids = [event.id for event in events]
    deadline = time.monotonic() + 10
    while len(_copies(opensearch, stream, ids)) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.1)  # the node indexes the batch; the shipper never hears back
    first = _copies(opensearch, stream, ids)[0]["_index"]
    opensearch.indices.rollover(alias=stream)
    proxy.set_mode("forward")
    assert sink.flush(60)
    copies = _copies(opensearch, stream, ids)
    if check:
        assert len(copies) == len({hit["_id"] for hit in copies}) == 20
        assert {hit["_index"] for hit in copies} == {first}
        assert sink.status()["already_stored"] == 20
    else:
        assert len(copies) == 40
        assert len({hit["_index"] for hit in copies}) == 2
    sink.close(5)
    proxy.stop()


SECOND_NODE_PORT = int(os.environ.get("AUDIT_OPENSEARCH_PORT", "9200")) + 51


@pytest.mark.slow
def test_node_stopped_mid_stream_loses_nothing_and_duplicates_nothing(opensearch, tmp_path, unique_name):
    """Stop a real node (with the plugins) while producing, keep producing, restart it (it turns
    green with its data): every event stored exactly once."""
    env = dict(
        os.environ,
        AUDIT_OPENSEARCH_PORT=str(SECOND_NODE_PORT),
        AUDIT_OPENSEARCH_NODE_DIR=str(tmp_path / "node"),
    )
    url = f"http://127.0.0.1:{SECOND_NODE_PORT}"
    node = [sys.executable, str(ROOT / "opensearch-local" / "node.py")]
    subprocess.run([*node, "start"], check=True, env=env)
    try:
        second = OpenSearch([url], timeout=30)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            apply(second, SetupConfig(prefix=unique_name, replicas=0, require_ism=False, alert_rules=()))
        sink = make_sink(unique_name, tmp_path / "state", url=url)
        audit_middleware.configure(sink=sink)
        produced = [record("start", resource=Resource("vm", str(n))).id for n in range(200)]
        subprocess.run([*node, "stop"], check=True, env=env)
        produced += [record("stop", resource=Resource("vm", str(n))).id for n in range(300)]
        time.sleep(1)
        assert sink.status()["healthy"] is False
        subprocess.run([*node, "start"], check=True, env=env)
        produced += [record("restart", resource=Resource("vm", str(n))).id for n in range(200)]
        assert sink.flush(60)
        ids = stored_ids(second, unique_name)
        assert len(ids) == len(set(ids)) == len(produced)
        assert set(ids) == set(produced)
        assert second.cluster.health()["status"] == "green"
        sink.close(5)
    finally:
        subprocess.run([*node, "stop"], check=False, env=env)


PRODUCER = """
import sys
import audit_middleware
from audit_middleware import Resource, record
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.sinks.opensearch.sink import OpenSearchSink

prefix, state_dir = sys.argv[1], sys.argv[2]
sink = OpenSearchSink(settings=ConnectionSettings(urls=("http://127.0.0.1:9",), prefix=prefix),
                      state_dir=state_dir, durable=True)
audit_middleware.configure(sink=sink)
n = 0
while True:
    event = record("create", resource=Resource("pod", str(n)))
    print(event.id, flush=True)   # acknowledged: record() returned
    n += 1
"""


def test_durable_mode_loses_nothing_acknowledged_on_kill_9(opensearch, layout, tmp_path):
    """kill -9 of a durable producer: every record it acknowledged is delivered by the next process."""
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, layout, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    acknowledged: list[str] = []
    assert producer.stdout is not None
    while len(acknowledged) < 300:
        line = producer.stdout.readline().strip()
        if UUID_LINE.match(line):  # other lines are the library's own log output
            acknowledged.append(line)
    producer.send_signal(signal.SIGKILL)
    producer.wait()
    acknowledged += [line for line in producer.stdout.read().split() if UUID_LINE.match(line)]
    sink = make_sink(layout, tmp_path)
    audit_middleware.configure(sink=sink)
    record("create", resource=Resource("pod", "successor"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not set(acknowledged) <= set(stored_ids(opensearch, layout)):
        time.sleep(0.5)
    assert set(acknowledged) <= set(stored_ids(opensearch, layout))
    sink.close(5)
