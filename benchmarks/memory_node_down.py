"""Memory while OpenSearch is unreachable under sustained load: bounded queue, spool on disk.

``record()`` is called as fast as one thread can (outside a request, as a background
job would) with an ``OpenSearchSink`` pointed at 127.0.0.1:9, where nothing listens.
The process's RSS and tracemalloc figures, the queue depth and the spool's size are
printed at intervals; memory should level off once the queue is full while the spool
grows on disk. At the end a fresh ``Spool`` adopts what was written and counts it:
every record must be there.
"""

from __future__ import annotations

import gc
import tempfile
import time
import tracemalloc
from pathlib import Path

import audit_middleware
from audit_middleware import Resource, record
from audit_middleware import config as audit_config
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.sinks.opensearch.shipper import ShipperOptions
from audit_middleware.sinks.opensearch.sink import OpenSearchSink
from audit_middleware.sinks.opensearch.spool import Spool
from benchmarks.common import (
    Result,
    Row,
    Settings,
    Table,
    fmt,
    fmt_bytes,
    peak_rss_bytes,
    reset_peak_rss,
    rss_bytes,
)
from benchmarks.node import DEAD_URL

NAME = "memory_node_down"
MIB = 1 << 20
RSS_BUDGET_MIB = 10.0
TRACED_BUDGET_MIB = 5.0


def _one(i: int) -> None:
    before = {"replicas": 2, "image": "nginx:1.26", "labels": {"team": "core", "tier": "web"}}
    after = {"replicas": 3, "image": "nginx:1.27", "labels": {"team": "core", "tier": "web"}}
    record(
        "update",
        resource=Resource("pod", f"pod-{i}", f"web-{i % 100}"),
        changes=(before, after),
        details={"reason": "scale up", "ticket": f"OPS-{i % 997}"},
        tenant=f"tenant-{i % 10}",
    )


def run(settings: Settings) -> Result:
    """Record ``count`` events with the node down, sampling memory as it goes."""
    count = settings.pick(200_000, 20_000)
    time_limit = settings.pick(300.0, 60.0)
    samples_wanted = 10
    options = ShipperOptions()
    result = Result(
        NAME,
        f"memory with the node unreachable, {count:,} records (queue bound {options.max_queue:,})",
        baseline_label="before",
        measured_label="after",
        settings={"records": count, "time_limit_s": time_limit, "max_queue": options.max_queue},
    )
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        state = Path(tmp)
        conn = ConnectionSettings(urls=(DEAD_URL,), prefix="bench-mem", timeout=2)
        sink = OpenSearchSink(settings=conn, state_dir=state, shutdown_timeout=2.0)
        audit_middleware.configure(sink=sink)
        try:
            for i in range(200):  # warm-up: imports, the shipper thread, the first spool segment
                _one(i)
            gc.collect()
            reset_peak_rss()
            tracemalloc.start()
            rss_start = rss_bytes()
            traced_start = tracemalloc.get_traced_memory()[0]
            started = time.monotonic()
            marks: dict[int, tuple[int, int]] = {}
            step = max(count // samples_wanted, 1)
            done = 0
            for i in range(count):
                _one(i)
                done = i + 1
                if done % step == 0 or done == count:
                    status = sink.status()
                    current, peak = tracemalloc.get_traced_memory()
                    rss = rss_bytes()
                    marks[done] = (rss, current)
                    elapsed = time.monotonic() - started
                    rows.append(
                        [
                            f"{done:,}",
                            f"{elapsed:.1f}",
                            fmt_bytes(rss),
                            fmt_bytes(current - traced_start),
                            fmt_bytes(peak - traced_start),
                            f"{status['queue_depth']:,}",
                            fmt_bytes(status["spool_bytes"]),
                            f"{status.get('spool_records', 0):,}",
                        ]
                    )
                    print(f"  {' | '.join(rows[-1])}", flush=True)
                    if elapsed > time_limit:
                        result.notes.append(
                            f"stopped at the time limit ({time_limit:.0f} s) after {done:,} records"
                        )
                        break
            elapsed = time.monotonic() - started
            status = sink.status()
            traced_peak = tracemalloc.get_traced_memory()[1]
            rss_peak = peak_rss_bytes()
            tracemalloc.stop()
        finally:
            audit_config.reset()  # closes the sink: 2 s to flush (nothing answers), the rest spooled
        checker = Spool(state / "spool")
        try:
            checker.adopt_orphans()
            on_disk = checker.stats()
        finally:
            checker.close()

    half = min(marks, key=lambda n: abs(n - done / 2))
    end = max(marks)
    rss_half, traced_half = marks[half]
    rss_end, traced_end = marks[end]
    total = done + 200
    result.rows += [
        Row(
            f"RSS: at {half:,} -> at {end:,} records",
            "MiB",
            rss_half / MIB,
            rss_end / MIB,
            delta=(rss_end - rss_half) / MIB,
            ratio=rss_end / rss_half,
            target=f"growth <= {RSS_BUDGET_MIB:g} MiB",
            met=(rss_end - rss_half) / MIB <= RSS_BUDGET_MIB,
        ),
        Row(
            f"tracemalloc current: at {half:,} -> at {end:,} records",
            "MiB",
            (traced_half - traced_start) / MIB,
            (traced_end - traced_start) / MIB,
            delta=(traced_end - traced_half) / MIB,
            target=f"growth <= {TRACED_BUDGET_MIB:g} MiB",
            met=(traced_end - traced_half) / MIB <= TRACED_BUDGET_MIB,
        ),
        Row(
            "RSS: start -> peak (VmHWM)", "MiB", rss_start / MIB, rss_peak / MIB, (rss_peak - rss_start) / MIB
        ),
        Row(
            "tracemalloc: start -> peak",
            "MiB",
            0.0,
            (traced_peak - traced_start) / MIB,
            (traced_peak - traced_start) / MIB,
        ),
        Row(
            "records: recorded -> found in the spool after close",
            "records",
            float(total),
            float(on_disk.records),
            delta=float(on_disk.records - total),
            target="all of them",
            met=on_disk.records == total and on_disk.dropped == 0,
        ),
    ]
    result.tables.append(
        Table(
            "as it went (RSS includes tracemalloc's own bookkeeping)",
            [
                "records",
                "seconds",
                "RSS",
                "traced now",
                "traced peak",
                "queue",
                "spool bytes",
                "spool records",
            ],
            rows,
        )
    )
    result.notes += [
        f"{done:,} records in {elapsed:.1f} s ({done / elapsed:,.0f}/s) from one thread; "
        f"counters before close: spooled {status['spooled']:,}, queue {status['queue_depth']:,}, "
        f"dropped {status['dropped']}",
        f"spool on disk after close: {fmt_bytes(on_disk.bytes)} in {on_disk.segments} segments "
        f"({on_disk.bytes / max(on_disk.records, 1):.0f} bytes per record)",
        "the targets hold the second half of the run: memory must level off once the queue is full; "
        f"RSS at start was {fmt(rss_start / MIB, 'MiB')}",
    ]
    return result
