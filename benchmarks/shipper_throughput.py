"""Sustained events/s into the local node: ``OpenSearchSink`` vs a raw opensearch-py bulk loop.

Both start from the same kind of ``AuditEvent`` objects (fresh ids per run) and write
them to the same data stream with ``op_type=create``, ``_id`` = event id, 1,000
documents per bulk. The raw loop is what a user would write with opensearch-py's
defaults (``client.bulk`` with a list of dicts, stdlib json, no compression). The sink
is fed by a producer thread that keeps its queue below the bound (nothing spills to the
disk spool) and is timed until ``flush()`` reports everything delivered. Variants of the
sink (gzip off, stdlib json) and of the raw loop (the sink's client settings) show where
the difference comes from; the variants take turns, round after round.
"""

from __future__ import annotations

import gzip
import io
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from audit_middleware.model.encoding import dumps
from audit_middleware.model.event import AuditEvent
from audit_middleware.opensearch.client import build_client
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.sinks.opensearch import bulk
from audit_middleware.sinks.opensearch.bulk import Item
from audit_middleware.sinks.opensearch.sink import OpenSearchSink
from benchmarks.common import Result, Row, Settings, Table, fmt, median
from benchmarks.events import sample_events
from benchmarks.node import count_documents, node_cpu_seconds, plain_client, temporary_layout, unique_prefix

NAME = "shipper_throughput"
TARGET_RATIO = 0.9
BATCH = 1000


class StdlibJsonSink(OpenSearchSink):
    """The sink with documents encoded by the standard library's json (to weigh orjson)."""

    def encode(self, event: AuditEvent) -> Item:
        """``OpenSearchSink.encode`` with ``json.dumps`` in place of orjson."""
        document = event.to_document()
        tier = self.router.tier_for(event.tenant.id if event.tenant is not None else None)
        document["audit"]["tier"] = tier
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=str)
        return Item(self.router.data_stream_for(tier), event.id, text.encode())


def _documents(events: list[AuditEvent]) -> list[dict[str, Any]]:
    # the sink adds the tier to each document; the raw loop sends the very same shape
    docs = []
    for event in events:
        doc = event.to_document()
        doc["audit"]["tier"] = "standard"
        docs.append(doc)
    return docs


def raw_loop(client: Any, events: list[AuditEvent], stream: str) -> None:
    """The reference: build documents, ``client.bulk`` 1,000 at a time, check every answer."""
    for start in range(0, len(events), BATCH):
        chunk = events[start : start + BATCH]
        body: list[dict[str, Any]] = []
        for event, doc in zip(chunk, _documents(chunk), strict=True):
            body.append({"create": {"_index": stream, "_id": event.id}})
            body.append(doc)
        answer = client.bulk(body=body)
        if answer["errors"]:
            raise RuntimeError("raw bulk loop: some items failed")


def raw_loop_ndjson(client: Any, events: list[AuditEvent], stream: str) -> None:
    """The raw loop with the sink's encoding: orjson NDJSON bytes (the client may gzip them)."""
    for start in range(0, len(events), BATCH):
        chunk = events[start : start + BATCH]
        lines = []
        for event, doc in zip(chunk, _documents(chunk), strict=True):
            lines.append(orjson.dumps({"create": {"_index": stream, "_id": event.id}}))
            lines.append(orjson.dumps(doc))
        answer = client.bulk(body=b"\n".join(lines) + b"\n")
        if answer["errors"]:
            raise RuntimeError("raw bulk loop: some items failed")


def feed_sink(sink: OpenSearchSink, events: list[AuditEvent]) -> None:
    """Emit every event, keeping the queue below its bound, then wait for delivery."""
    high_water = sink.options.max_queue - 2 * BATCH
    for i, event in enumerate(events):
        if i % 100 == 0:
            deadline = time.monotonic() + 60
            while sink.status()["queue_depth"] > high_water and time.monotonic() < deadline:
                time.sleep(0.001)
        sink.emit(event)
    if not sink.flush(timeout=120):
        raise RuntimeError(f"the sink did not deliver everything within 120 s: {sink.status()}")


def _timed(work: Callable[[], None], client: Any, count: int) -> dict[str, float]:
    node0 = node_cpu_seconds(client)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    work()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "events_per_s": count / wall,
        "seconds": wall,
        "cpu_us_per_event": cpu / count * 1e6,
        "node_cpu_us_per_event": (node_cpu_seconds(client) - node0) / count * 1e6,
    }


def encoding_table(count: int) -> Table:
    """Per-document costs of the shipper's steps, each timed alone over ``count`` documents."""
    events = sample_events(count)
    docs = [e.to_document() for e in events]
    items = [Item("s", e.id, dumps(d)) for e, d in zip(events, docs, strict=True)]
    body = bulk.encode(items)

    def per_doc(fn: Callable[[], object], repeats: int = 5) -> float:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter_ns()
            fn()
            best = min(best, (time.perf_counter_ns() - start) / count / 1000)
        return best

    def gzip_level(level: int) -> Callable[[], bytes]:
        def run() -> bytes:
            buffer = io.BytesIO()
            with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=level) as handle:
                handle.write(body)
            return buffer.getvalue()

        return run

    rows = [
        ("AuditEvent.to_document()", per_doc(lambda: [e.to_document() for e in events])),
        ("orjson: serialization.dumps(document)", per_doc(lambda: [dumps(d) for d in docs])),
        (
            "stdlib: json.dumps(document).encode()",
            per_doc(
                lambda: [json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode() for d in docs]
            ),
        ),
        ("bulk.encode (action lines + join)", per_doc(lambda: bulk.encode(items))),
        ("gzip level 9 (opensearch-py http_compress)", per_doc(gzip_level(9), repeats=3)),
        ("gzip level 1 (for comparison)", per_doc(gzip_level(1), repeats=3)),
    ]
    size = len(body) / count
    return Table(
        f"shipper work per document, each step timed alone over {count} documents (~{size:.0f} bytes each)",
        ["step", "µs per document"],
        [[name, fmt(value)] for name, value in rows],
    )


def run(settings: Settings) -> Result:
    """Deliver the same number of events each way, in turns, and compare events/s."""
    count = settings.pick(50_000, 5_000)
    rounds = settings.pick(3, 1)
    result = Result(
        NAME,
        "events/s into the local node, raw opensearch-py bulk loop vs OpenSearchSink",
        baseline_label="raw loop",
        measured_label="sink",
        settings={"events_per_run": count, "rounds": rounds, "batch": BATCH},
    )
    url = settings.opensearch_url
    client = plain_client(url)
    prefix = unique_prefix("ship")
    figures: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp, temporary_layout(client, prefix):
        stream = f"{prefix}-standard"
        conn = ConnectionSettings(urls=(url,), prefix=prefix, timeout=60)
        sink_client = build_client(conn)  # the sink's client settings, for the raw ndjson variant

        def sink_variant(name: str, **kwargs: Any) -> Callable[[list[AuditEvent]], None]:
            # A sink per run, started and warmed (thread, connection, first segment)
            # before the clock starts: a process pays that once, not per batch.
            def deliver(events: list[AuditEvent]) -> None:
                sink_class = kwargs.get("sink_class", OpenSearchSink)
                state = Path(tmp) / f"{name}-{time.monotonic_ns()}"
                sink = sink_class(
                    settings=conn,
                    state_dir=state,
                    client_factory=kwargs.get("client_factory"),
                    shutdown_timeout=60,
                )
                try:
                    warm = sample_events(BATCH)
                    feed_sink(sink, warm)
                    timings.append(_timed(lambda: feed_sink(sink, events), client, len(events)))
                    status = sink.status()
                    total = len(events) + len(warm)
                    if status["delivered"] != total or status["spooled"] or status["dead_lettered"]:
                        raise RuntimeError(f"{name}: not everything was delivered once: {status}")
                finally:
                    sink.close()

            return deliver

        def raw_variant(loop: Callable[[Any, list[AuditEvent], str], None], raw_client: Any) -> Any:
            def deliver(events: list[AuditEvent]) -> None:
                timings.append(_timed(lambda: loop(raw_client, events, stream), client, len(events)))

            return deliver

        timings: list[dict[str, float]] = []
        variants: dict[str, Callable[[list[AuditEvent]], None]] = {
            "raw loop (opensearch-py defaults)": raw_variant(raw_loop, client),
            "OpenSearchSink (defaults: orjson, gzip)": sink_variant("sink"),
            "OpenSearchSink, gzip off": sink_variant(
                "nogzip", client_factory=lambda: build_client(conn, max_retries=0, http_compress=False)
            ),
            "OpenSearchSink, stdlib json encoding": sink_variant("stdlib", sink_class=StdlibJsonSink),
            "raw loop, orjson NDJSON + gzip client": raw_variant(raw_loop_ndjson, sink_client),
        }
        names = list(variants)
        for name in names:  # warm-up: connections, caches, the data stream's first writes
            variants[name](sample_events(BATCH))
        timings.clear()
        sinks = sum(1 for name in names if "Sink" in name)
        expected = len(names) * BATCH + sinks * BATCH  # warm-up runs, and each sink's own warm-up
        for rnd in range(rounds):
            order = names[rnd % len(names) :] + names[: rnd % len(names)]
            for name in order:
                variants[name](sample_events(count))
                figures.setdefault(name, []).append(timings.pop())
                expected += count + (BATCH if "Sink" in name else 0)
        stored = count_documents(client, prefix)
        result.notes.append(
            f"documents in the data stream: {stored:,} (expected {expected:,}: each event once)"
        )
        if stored != expected:
            result.notes.append("MISMATCH between documents stored and events sent")
        result.tables.append(encoding_table(settings.pick(5000, 1000)))

    raw_name = names[0]
    raw_rate = median([f["events_per_s"] for f in figures[raw_name]])
    rows = []
    for name in names:
        runs = figures[name]
        rate = median([f["events_per_s"] for f in runs])
        rows.append(
            [
                name,
                fmt(rate),
                " / ".join(fmt(f["events_per_s"]) for f in runs),
                f"{rate / raw_rate:.3f}x",
                fmt(median([f["cpu_us_per_event"] for f in runs]), "µs"),
                fmt(median([f["node_cpu_us_per_event"] for f in runs]), "µs"),
            ]
        )
        if name == raw_name:
            continue
        primary = name == names[1]
        result.rows.append(
            Row(
                f"events/s: {name}",
                "ev/s",
                raw_rate,
                rate,
                delta=rate - raw_rate,
                ratio=rate / raw_rate,
                target=f">= {TARGET_RATIO}x raw" if primary else "",
                met=(rate / raw_rate >= TARGET_RATIO) if primary else None,
            )
        )
    result.tables.insert(
        0,
        Table(
            "per variant (medians of the rounds; CPU = this process, all threads; node = OpenSearch JVM)",
            ["variant", "events/s", "each round", "vs raw", "CPU/event", "node CPU/event"],
            rows,
        ),
    )
    result.data = figures
    result.notes += [
        f"{rounds} rounds of {count:,} events per variant, variants taking turns; "
        f"batch {BATCH}, op_type create",
        "only the first sink row holds the target; the other rows are variants that explain it",
        "the node runs on the same 2 cores as this process: its indexing CPU limits both sides",
    ]
    return result
