"""Request-path latency with the node up vs unreachable: records must not slow requests.

A wrapped Flask app is called in-process (audited POSTs, each timed alone) with an
``OpenSearchSink`` pointed either at the local node or at 127.0.0.1:9, where nothing
listens, so every record ends in the disk spool; a ``NullSink`` (no background thread)
is measured beside them for reference. Two load shapes: a closed loop (the
next request as soon as the last one returned: a saturated worker) and a paced one
(a steady rate below saturation). Modes take turns, a fresh sink each time.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import audit_middleware
from audit_middleware import AuditMiddleware
from audit_middleware import config as audit_config
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.sinks import Sink
from audit_middleware.sinks.opensearch.sink import OpenSearchSink
from benchmarks.apps import NullSink, flask_app
from benchmarks.capture_inprocess import wsgi_environ, wsgi_runner
from benchmarks.common import Result, Row, Settings, Table, fmt, median, percentile
from benchmarks.node import DEAD_URL, plain_client, temporary_layout, unique_prefix

NAME = "request_latency_node_down"
PACED_RATE = 1000  # requests/s
MODES = ("up", "down", "null")
LABELS = {"up": "node up", "down": "node down", "null": "NullSink (no shipper)"}


def _latencies(runner: Any, count: int, rate: float | None, sink: Sink) -> tuple[list[float], int]:
    """µs per request for ``count`` requests (paced at ``rate``/s if given), and the deepest queue seen."""
    out: list[float] = []
    deepest = 0
    interval = None if rate is None else 1.0 / rate
    next_start = time.perf_counter()
    for i in range(count):
        if interval is not None:
            next_start += interval
            pause = next_start - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        out.append(runner(1) / 1000)
        if i % 500 == 0 and isinstance(sink, OpenSearchSink):
            deepest = max(deepest, sink.status()["queue_depth"])
    return out, deepest


def run(settings: Settings) -> Result:
    """Alternate node-up and node-down blocks, for a closed loop and a paced load."""
    rounds = settings.pick(3, 1)
    shapes = {
        "closed loop": (settings.pick(20_000, 3_000), None),
        f"paced {PACED_RATE}/s": (settings.pick(15_000, 3_000), float(PACED_RATE)),
    }
    result = Result(
        NAME,
        "µs per audited WSGI request (Flask, OpenSearchSink), node up vs unreachable",
        baseline_label="node up",
        measured_label="node down",
        settings={
            "rounds": rounds,
            "shapes": {k: {"requests": v[0], "rate": v[1]} for k, v in shapes.items()},
        },
    )
    client = plain_client(settings.opensearch_url)
    prefix = unique_prefix("lat")
    app = AuditMiddleware(flask_app())
    runner = wsgi_runner(app, wsgi_environ("POST", "/items"))
    samples: dict[tuple[str, str], list[dict[str, Any]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp, temporary_layout(client, prefix):
            urls = {"up": settings.opensearch_url, "down": DEAD_URL}
            for rnd in range(rounds):
                for shape, (count, rate) in shapes.items():
                    for mode in MODES[rnd % 3 :] + MODES[: rnd % 3]:
                        sink: Sink
                        if mode == "null":
                            sink = NullSink()
                        else:
                            conn = ConnectionSettings(urls=(urls[mode],), prefix=prefix, timeout=5)
                            sink = OpenSearchSink(
                                settings=conn,
                                state_dir=Path(tmp) / f"{mode}-{rnd}-{shape[:6]}",
                                shutdown_timeout=1.0,
                            )
                        audit_middleware.configure(sink=sink)
                        try:
                            runner(500)  # warm-up: the shipper starts, the first batch leaves
                            values, deepest = _latencies(runner, count, rate, sink)
                            status = sink.status() if isinstance(sink, OpenSearchSink) else {}
                        finally:
                            audit_config.reset()  # closes the sink: flush (1 s at most), rest spooled
                        values.sort()
                        samples.setdefault((shape, mode), []).append(
                            {
                                "p50": percentile(values, 50),
                                "p90": percentile(values, 90),
                                "p99": percentile(values, 99),
                                "max": values[-1],
                                "deepest_queue": deepest,
                                "delivered": status.get("delivered", 0),
                                "spooled": status.get("spooled", 0),
                            }
                        )
    finally:
        audit_config.reset()

    detail = []
    for shape in shapes:
        for stat, floor in (("p50", 0.05), ("p99", 0.10)):
            up = [s[stat] for s in samples[(shape, "up")]]
            down = [s[stat] for s in samples[(shape, "down")]]
            noise = max((max(up) - min(up)) / 2 + (max(down) - min(down)) / 2, floor * median(up))
            delta = median(down) - median(up)
            result.rows.append(
                Row(
                    f"{shape}: {stat}",
                    "µs",
                    median(up),
                    median(down),
                    delta=delta,
                    ratio=median(down) / median(up),
                    target=f"delta <= noise ({noise:.1f} µs)",
                    met=delta <= noise,
                )
            )
        for mode in MODES:
            runs = samples[(shape, mode)]
            detail.append(
                [
                    shape,
                    LABELS[mode],
                    *(fmt(median([r[k] for r in runs]), "µs") for k in ("p50", "p90", "p99", "max")),
                    str(max(r["deepest_queue"] for r in runs)),
                    f"{sum(r['delivered'] for r in runs):,}",
                    f"{sum(r['spooled'] for r in runs):,}",
                ]
            )
    result.tables.append(
        Table(
            "per mode (medians of the rounds; queue bound 10,000; counters before close)",
            ["load", "mode", "p50", "p90", "p99", "max", "deepest queue", "delivered", "spooled"],
            detail,
        )
    )
    result.data = {f"{shape} / {mode}": runs for (shape, mode), runs in samples.items()}
    result.notes += [
        f"{rounds} rounds; in each, node-up and node-down blocks alternate, a fresh sink per block",
        "noise = half the round-to-round range of each mode, added, but at least 5% (p50) / 10% (p99) "
        "of the node-up figure",
        "node down: the sink points at 127.0.0.1:9 (connection refused at once); records go to the spool",
        "the target is one-sided: the outage must not make requests slower; NullSink blocks (no background "
        "thread) show what the shipper thread itself costs the request path",
    ]
    return result
