"""Bulk answers a real node will not give on cue: 429 storms, mixed item verdicts, 413."""

from __future__ import annotations

import gzip
import json
import re
import threading

import pytest
import responses
from opensearchpy import RequestsHttpConnection

import audit_middleware
from audit_middleware import Resource, record
from audit_middleware.opensearch.client import build_client
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.sinks.opensearch.bulk import Item
from audit_middleware.sinks.opensearch.shipper import ShipperOptions
from audit_middleware.sinks.opensearch.sink import OpenSearchSink

URL = "http://127.0.0.1:9299"
# a batch window long enough that the events a test records go out together, even on a busy machine
FAST = ShipperOptions(flush_interval=0.5, backoff_base=0.01, backoff_max=0.05, quick_retries=3)


def bulk_lines(request) -> list[dict]:
    body = request.body if isinstance(request.body, bytes) else request.body.encode()
    assert body[:2] == b"\x1f\x8b", "bulk bodies are gzip-compressed"
    body = gzip.decompress(body)
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def ids_of(request) -> list[str]:
    return [line["create"]["_id"] for line in bulk_lines(request) if "create" in line]


def item(status: int, error_type: str | None = None) -> dict:
    answer: dict = {"status": status}
    if error_type:
        answer["error"] = {"type": error_type, "reason": f"{error_type} happened"}
    return {"create": answer}


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.HEAD, f"{URL}/_index_template/audit-events", status=200)
        yield rsps


def make_sink(tmp_path, options=FAST) -> OpenSearchSink:
    settings = ConnectionSettings(urls=(URL,), timeout=1.0)
    sink = OpenSearchSink(
        settings=settings,
        # as the sink's own client: no retries inside opensearch-py, the shipper decides
        client_factory=lambda: build_client(settings, connection_class=RequestsHttpConnection, max_retries=0),
        state_dir=tmp_path,
        options=options,
    )
    audit_middleware.configure(sink=sink)
    return sink


def test_429_storm_is_retried_until_delivered(mocked, tmp_path):
    """Bulk requests answered 429 several times are retried with backoff until they pass."""
    calls: list[list[str]] = []

    def answer(request):
        calls.append(ids_of(request))
        if len(calls) <= 5:
            return 429, {}, json.dumps({"error": {"type": "rejected_execution"}, "status": 429})
        return 200, {}, json.dumps({"errors": False, "items": [item(201) for _ in calls[-1]]})

    mocked.add_callback(responses.POST, f"{URL}/_bulk", callback=answer, content_type="application/json")
    sink = make_sink(tmp_path)
    events = [record("create", resource=Resource("pod", str(n))) for n in range(3)]
    assert sink.flush(20)
    status = sink.status()
    assert status["delivered"] == 3
    assert status["retried"] >= 3
    assert status["dropped"] == 0
    assert calls[-1] == [e.id for e in events]
    sink.close(1)


def test_mixed_item_answer_is_read_item_by_item(mocked, tmp_path):
    """One answer with 201/409/429/400/503 items: 201 and 409 done, 429 and 503 retried, 400 dead-lettered."""
    calls: list[list[str]] = []

    def answer(request):
        ids = ids_of(request)
        calls.append(ids)
        if len(calls) == 1:
            verdicts = [
                item(201),
                item(409, "version_conflict_engine_exception"),
                item(429, "rejected"),
                item(400, "mapper_parsing_exception"),
                item(503, "unavailable_shards_exception"),
            ]
        else:
            verdicts = [item(201) for _ in ids]
        return 200, {}, json.dumps({"errors": True, "items": verdicts})

    mocked.add_callback(responses.POST, f"{URL}/_bulk", callback=answer, content_type="application/json")
    sink = make_sink(tmp_path)
    events = [record("create", resource=Resource("pod", str(n))) for n in range(5)]
    assert sink.flush(20)
    assert calls[0] == [e.id for e in events]
    assert calls[1] == [events[2].id, events[4].id]  # only the retryable ones go again
    status = sink.status()
    assert status["delivered"] == 4
    assert status["conflicts"] == 1
    assert status["dead_lettered"] == 1
    letter = json.loads((tmp_path / "dead-letter.jsonl").read_text().splitlines()[0])
    assert letter["document"]["event"]["id"] == events[3].id
    assert "mapper_parsing_exception" in letter["reason"]
    sink.close(1)


def test_413_splits_the_batch(mocked, tmp_path):
    """A 413 answer splits the batch in halves until each part fits."""
    sizes: list[int] = []

    def answer(request):
        ids = ids_of(request)
        sizes.append(len(ids))
        if len(ids) > 2:
            return 413, {}, json.dumps({"error": "too large", "status": 413})
        return 200, {}, json.dumps({"errors": False, "items": [item(201) for _ in ids]})

    mocked.add_callback(responses.POST, f"{URL}/_bulk", callback=answer, content_type="application/json")
    sink = make_sink(tmp_path, ShipperOptions(flush_interval=0.3, backoff_base=0.01))
    for n in range(8):
        record("create", resource=Resource("pod", str(n)))
    assert sink.flush(20)
    assert sizes[0] == 8
    assert sizes[1:] == [4, 2, 2, 4, 2, 2]
    assert sink.status()["delivered"] == 8
    sink.close(1)


def test_request_path_does_not_wait_for_a_stuck_node(mocked, tmp_path):
    """While a bulk request hangs, emit() keeps returning: the events wait in the queue."""
    release = threading.Event()
    in_flight = threading.Event()

    def answer(request):
        in_flight.set()
        release.wait(10)
        return 200, {}, json.dumps({"errors": False, "items": [item(201) for _ in ids_of(request)]})

    mocked.add_callback(responses.POST, f"{URL}/_bulk", callback=answer, content_type="application/json")
    sink = make_sink(tmp_path)
    record("create", resource=Resource("pod", "warm"))
    assert in_flight.wait(10)
    for n in range(100):
        record("create", resource=Resource("pod", str(n)))
    assert sink.status()["queue_depth"] == 100
    release.set()
    assert sink.flush(20)
    assert sink.status()["delivered"] == 101
    sink.close(1)


# -- re-sending without a second copy --------------------------------------------------------


def test_spool_payloads_say_whether_an_item_was_ever_sent():
    """A never-sent item is marked fresh in the spool; an uncertain one, a legacy payload, or one
    adopted from a dead process's spool is uncertain when read back."""
    document = json.dumps({"event": {"id": "e1"}, "@timestamp": "2026-01-01T00:00:00.000Z"}).encode()
    fresh = Item("audit-standard", "e1", document)
    assert Item.from_spool(fresh.spool_payload(), "s").uncertain is False
    assert Item.from_spool(fresh.spool_payload(), "s", adopted=True).uncertain is True
    sent = Item("audit-standard", "e1", document, uncertain=True)
    assert Item.from_spool(sent.spool_payload(), "s").uncertain is True
    legacy = b"audit-standard\n" + document
    back = Item.from_spool(legacy, "s")
    assert (back.index, back.id, back.uncertain) == ("audit-standard", "e1", True)


def _lookups(mocked, found: set[str] | None) -> list[dict]:
    """Answer the look-up before a re-send: one stream of two backing indices; ``found`` ids exist
    (``None``: the look-up fails with 500)."""
    seen: list[dict] = []
    backing = [".ds-audit-standard-000001", ".ds-audit-standard-000002"]
    stream = {"name": "audit-standard", "indices": [{"index_name": name} for name in backing]}
    mocked.add(responses.GET, f"{URL}/_data_stream/audit-standard", json={"data_streams": [stream]})
    created = {name: {"settings": {"index": {"creation_date": "4102444800000"}}} for name in backing}
    mocked.add(responses.GET, re.compile(rf"{URL}/.*_settings/index\.creation_date.*"), json=created)

    def mget(request):
        body = request.body if isinstance(request.body, bytes) else request.body.encode()
        docs = json.loads(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)["docs"]
        seen.append({"docs": docs})
        if found is None:
            return 500, {}, json.dumps({"error": "boom"})
        answer = [
            {"_index": d["_index"], "_id": d["_id"], "found": d["_id"] in found and d["_index"].endswith("1")}
            for d in docs
        ]
        return 200, {}, json.dumps({"docs": answer})

    mocked.add_callback(responses.POST, f"{URL}/_mget", callback=mget, content_type="application/json")
    return seen


def test_after_an_ambiguous_failure_only_the_records_not_found_are_sent_again(mocked, tmp_path):
    """A 503 for a whole bulk may have been applied: before retrying, each record is looked up in the
    stream's backing indices (real-time _mget); found ones count as delivered and are not re-sent."""
    calls: list[list[str]] = []

    def answer(request):
        calls.append(ids_of(request))
        if len(calls) == 1:
            return 503, {}, json.dumps({"error": {"type": "unavailable"}, "status": 503})
        return 200, {}, json.dumps({"errors": False, "items": [item(201) for _ in calls[-1]]})

    mocked.add_callback(responses.POST, f"{URL}/_bulk", callback=answer, content_type="application/json")
    found: set[str] = set()
    lookups = _lookups(mocked, found=found)
    sink = make_sink(tmp_path)
    events = [record("create", resource=Resource("pod", str(n))) for n in range(3)]
    found.add(events[0].id)
    assert sink.flush(20)
    assert calls[0] == [e.id for e in events]
    assert calls[1] == [e.id for e in events[1:]]
    assert {doc["_index"] for doc in lookups[0]["docs"]} == {
        ".ds-audit-standard-000001",
        ".ds-audit-standard-000002",
    }
    status = sink.status()
    assert (status["delivered"], status["already_stored"]) == (3, 1)
    sink.close(1)


def test_records_that_cannot_be_looked_up_are_not_written_again(mocked, tmp_path):
    """When the look-up itself fails, the records wait (spooled) rather than risk a second copy."""
    calls: list[list[str]] = []

    def answer(request):
        calls.append(ids_of(request))
        return 503, {}, json.dumps({"error": {"type": "unavailable"}, "status": 503})

    mocked.add_callback(responses.POST, f"{URL}/_bulk", callback=answer, content_type="application/json")
    sink = make_sink(
        tmp_path, options=ShipperOptions(flush_interval=0.2, backoff_base=0.01, backoff_max=0.05)
    )
    record("create", resource=Resource("pod", "1"))
    lookups = _lookups(mocked, found=None)
    deadline = __import__("time").monotonic() + 10
    while sink.status()["spooled"] == 0 and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.05)
    assert len(calls) == 1  # sent once; every retry stopped at the failed look-up
    assert lookups
    assert sink.status()["spooled"] == 1
    sink.close(1)
