"""All-in CPU per audited request: the request thread plus the background threads, in µs.

The in-process benchmark times only the request thread; the work moved off it (deriving
the record, redaction, serialisation, the store's writes) still costs the app's cores.
Here each run makes ``n`` audited requests and then waits (``audit_middleware.flush()``)
until the records are stored, and the process's CPU time (every thread: the request
thread, the delivery worker, the SQLite writer or the OpenSearch shipper) is read
around it with ``time.process_time_ns``. The request thread's own time is read with
``time.thread_time_ns``, so the table splits the cost into the two parts. Bare and
wrapped runs alternate in the same process; the figure is wrapped minus bare.

Sinks: the default SQLite store (a new file), JSON lines, and, when the local node
answers, ``OpenSearchSink`` (the node's own CPU is not counted: it is another process).
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import audit_middleware
from audit_middleware import ASGIAuditMiddleware, AuditMiddleware
from audit_middleware import config as audit_config
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.sinks import JsonLinesSink, Sink, SQLiteSink
from audit_middleware.sinks.opensearch.sink import OpenSearchSink
from benchmarks.apps import flask_app, starlette_app
from benchmarks.capture_inprocess import AsgiDriver, asgi_scope, wsgi_environ, wsgi_runner
from benchmarks.common import Result, Row, Settings, Table, fmt, median
from benchmarks.node import count_documents, plain_client, temporary_layout, unavailable, unique_prefix

NAME = "allin_cpu"
TARGET_US = 35.0

Runner = Callable[[int], int]


def _timed(runner: Runner, calls: int, *, settle: bool) -> tuple[float, float]:
    """(process CPU ns, request-thread CPU ns) of ``calls`` requests, records stored if ``settle``."""
    process_start = time.process_time_ns()
    thread_ns = runner(calls)
    if settle:
        audit_config.get_config().sink.flush()
    return float(time.process_time_ns() - process_start), float(thread_ns)


def measure(bare: Runner, wrapped: Runner, calls: int, repeats: int) -> dict[str, list[float]]:
    """Alternating bare and wrapped runs; µs per request for each part, per run."""
    runs: dict[str, list[float]] = {"bare": [], "wrapped": [], "bare_thread": [], "wrapped_thread": []}
    for _ in range(2):  # warm-up: imports, first connections, the threads' start
        _timed(bare, calls, settle=False)
        _timed(wrapped, calls, settle=True)
    for _ in range(repeats):
        process_ns, thread_ns = _timed(bare, calls, settle=False)
        runs["bare"].append(process_ns / calls / 1000)
        runs["bare_thread"].append(thread_ns / calls / 1000)
        process_ns, thread_ns = _timed(wrapped, calls, settle=True)
        runs["wrapped"].append(process_ns / calls / 1000)
        runs["wrapped_thread"].append(thread_ns / calls / 1000)
    return runs


def _sinks(work: Path, opensearch: tuple[str, str] | None) -> dict[str, Callable[[], Sink]]:
    sinks: dict[str, Callable[[], Sink]] = {
        "default SQLite store": lambda: SQLiteSink(work / "audit.sqlite3", install_signal_handlers=False),
        "JSON lines": lambda: JsonLinesSink(work / "audit.jsonl"),
    }
    if opensearch is not None:
        url, prefix = opensearch
        sinks["OpenSearch sink"] = lambda: OpenSearchSink(
            settings=ConnectionSettings(urls=(url,), prefix=prefix), state_dir=work / "state"
        )
    return sinks


def _stored(name: str, work: Path, client: Any, prefix: str) -> int:
    if name == "default SQLite store":
        with contextlib.closing(sqlite3.connect(work / "audit.sqlite3")) as conn:
            count: int = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        return count
    if name == "JSON lines":
        return sum(1 for _ in (work / "audit.jsonl").open("rb"))
    return count_documents(client, prefix)


def run(settings: Settings) -> Result:
    """All-in CPU per audited request, bare vs wrapped, for each sink and server kind."""
    calls = settings.pick(500, 200)
    repeats = settings.pick(31, 5)
    result = Result(
        NAME,
        "CPU µs per audited request in the app's process (request thread + background threads)",
        baseline_label="bare",
        measured_label="wrapped",
        settings={"calls_per_run": calls, "runs_per_variant": repeats},
    )
    node_problem = unavailable(settings.opensearch_url)
    client = plain_client(settings.opensearch_url) if node_problem is None else None
    prefix = unique_prefix("cpu")
    split: list[list[str]] = []
    checks: list[str] = []
    with tempfile.TemporaryDirectory(prefix="audit-cpu-") as tmp, contextlib.ExitStack() as stack:
        if client is not None:
            stack.enter_context(temporary_layout(client, prefix))
        opensearch = (settings.opensearch_url, prefix) if client is not None else None
        for sink_name, make_sink in _sinks(Path(tmp), opensearch).items():
            before = _stored(sink_name, Path(tmp), client, prefix) if sink_name == "OpenSearch sink" else 0
            audit_middleware.configure(sink=make_sink())
            driver = AsgiDriver()
            try:
                starlette = starlette_app()
                flask = flask_app()
                cases: list[tuple[str, Runner, Runner]] = [
                    (
                        "ASGI Starlette POST",
                        driver.runner(starlette, asgi_scope("POST", "/items")),
                        driver.runner(ASGIAuditMiddleware(starlette), asgi_scope("POST", "/items")),
                    ),
                    (
                        "WSGI Flask POST",
                        wsgi_runner(flask, wsgi_environ("POST", "/items")),
                        wsgi_runner(AuditMiddleware(flask), wsgi_environ("POST", "/items")),
                    ),
                ]
                made = 0
                for case, bare, wrapped in cases:
                    runs = measure(bare, wrapped, calls, repeats)
                    made += (repeats + 2) * calls
                    name = f"{case}, {sink_name}"
                    delta = median([w - b for b, w in zip(runs["bare"], runs["wrapped"], strict=True)])
                    thread = median(
                        [w - b for b, w in zip(runs["bare_thread"], runs["wrapped_thread"], strict=True)]
                    )
                    result.rows.append(
                        Row(
                            f"{name}: all-in CPU added",
                            "µs",
                            median(runs["bare"]),
                            median(runs["wrapped"]),
                            delta=delta,
                            ratio=median(runs["wrapped"]) / median(runs["bare"]),
                            target=f"<= {TARGET_US:g} µs" if sink_name == "default SQLite store" else "",
                            met=delta <= TARGET_US if sink_name == "default SQLite store" else None,
                        )
                    )
                    split.append([name, fmt(thread, "µs"), fmt(delta - thread, "µs"), fmt(delta, "µs")])
                    result.data[name] = runs
            finally:
                driver.close()
                audit_config.reset()  # closes the sink: everything stored
            stored = _stored(sink_name, Path(tmp), client, prefix) - before
            checks.append(f"{sink_name}: {stored} records stored for {made} audited requests")
            if stored != made:
                raise RuntimeError(f"{sink_name}: {stored} records stored for {made} audited requests")
    result.tables.append(
        Table(
            "where the added CPU runs (medians of the paired differences)",
            ["case", "request thread", "background threads", "all-in"],
            split,
        )
    )
    result.notes += [
        f"{repeats} runs of {calls} requests per variant, bare and wrapped alternating in this process; "
        "a wrapped run ends when flush() returns (its records stored)",
        "CPU = time.process_time_ns (all threads of this process); request thread = time.thread_time_ns",
        *checks,
    ]
    if node_problem is not None:
        result.notes.append(f"OpenSearch sink not measured: {node_problem}")
    return result
