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
Beside them, the floor (``benchmarks.floor``, not audit-middleware): the least any audit
middleware must do, raw facts in a dict on a queue and one thread appending them as JSON
lines or inserting them into an unindexed SQLite table, measured the same way.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from functools import partial
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
from benchmarks.common import Result, Row, Settings, Table, count_lines, count_rows, fmt, median
from benchmarks.floor import FloorASGI, FloorJsonLines, FloorSQLite, FloorWriter, FloorWSGI
from benchmarks.node import count_documents, plain_client, temporary_layout, unavailable, unique_prefix

NAME = "allin_cpu"
TARGET_US = 35.0

Runner = Callable[[int], int]


def _timed(runner: Runner, calls: int, settle: Callable[[], object] | None) -> tuple[float, float]:
    """(process CPU ns, request-thread CPU ns) of ``calls`` requests, records stored by ``settle``."""
    process_start = time.process_time_ns()
    thread_ns = runner(calls)
    if settle is not None:
        settle()
    return float(time.process_time_ns() - process_start), float(thread_ns)


def _sink_flush() -> None:
    audit_config.get_config().sink.flush()


def measure(
    bare: Runner, wrapped: Runner, calls: int, repeats: int, settle: Callable[[], object] = _sink_flush
) -> dict[str, list[float]]:
    """Alternating bare and wrapped runs; µs per request for each part, per run."""
    runs: dict[str, list[float]] = {"bare": [], "wrapped": [], "bare_thread": [], "wrapped_thread": []}
    for _ in range(2):  # warm-up: imports, first connections, the threads' start
        _timed(bare, calls, None)
        _timed(wrapped, calls, settle)
    for _ in range(repeats):
        process_ns, thread_ns = _timed(bare, calls, None)
        runs["bare"].append(process_ns / calls / 1000)
        runs["bare_thread"].append(thread_ns / calls / 1000)
        process_ns, thread_ns = _timed(wrapped, calls, settle)
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
        return count_rows(work / "audit.sqlite3")
    if name == "JSON lines":
        return count_lines(work / "audit.jsonl")
    return count_documents(client, prefix)


def _add_case(
    result: Result, split: list[list[str]], name: str, runs: dict[str, list[float]], *, held: bool
) -> None:
    """One row (held to the target when ``held``) and the request-thread / background split of a case."""
    delta = median([w - b for b, w in zip(runs["bare"], runs["wrapped"], strict=True)])
    thread = median([w - b for b, w in zip(runs["bare_thread"], runs["wrapped_thread"], strict=True)])
    result.rows.append(
        Row(
            f"{name}: all-in CPU added",
            "µs",
            median(runs["bare"]),
            median(runs["wrapped"]),
            delta=delta,
            ratio=median(runs["wrapped"]) / median(runs["bare"]),
            target=f"<= {TARGET_US:g} µs" if held else "",
            met=delta <= TARGET_US if held else None,
        )
    )
    split.append([name, fmt(thread, "µs"), fmt(delta - thread, "µs"), fmt(delta, "µs")])
    result.data[name] = runs


Case = tuple[str, Runner, Runner]


def _cases(
    driver: AsgiDriver, wrap_asgi: Callable[[Any], Any], wrap_wsgi: Callable[[Any], Any]
) -> list[Case]:
    """Starlette and Flask POSTs, bare and wrapped by ``wrap_asgi`` / ``wrap_wsgi``."""
    starlette = starlette_app()
    flask = flask_app()
    return [
        (
            "ASGI Starlette POST",
            driver.runner(starlette, asgi_scope("POST", "/items")),
            driver.runner(wrap_asgi(starlette), asgi_scope("POST", "/items")),
        ),
        (
            "WSGI Flask POST",
            wsgi_runner(flask, wsgi_environ("POST", "/items")),
            wsgi_runner(wrap_wsgi(flask), wsgi_environ("POST", "/items")),
        ),
    ]


def _floors(result: Result, split: list[list[str]], work: Path, calls: int, repeats: int) -> list[str]:
    """The floor's cases (``benchmarks.floor``), measured as the sinks are; returns the record checks."""
    checks: list[str] = []
    writers: dict[str, tuple[Callable[[], FloorWriter], Callable[[], int]]] = {
        "floor, JSON lines": (
            lambda: FloorJsonLines(work / "floor.jsonl"),
            lambda: count_lines(work / "floor.jsonl"),
        ),
        "floor, unindexed SQLite table": (
            lambda: FloorSQLite(work / "floor.sqlite3"),
            lambda: count_rows(work / "floor.sqlite3", "floor"),
        ),
    }
    for floor_name, (make_writer, stored) in writers.items():
        writer = make_writer()
        driver = AsgiDriver()
        made = 0
        try:
            for case, bare, wrapped in _cases(
                driver, partial(FloorASGI, writer=writer), partial(FloorWSGI, writer=writer)
            ):
                runs = measure(bare, wrapped, calls, repeats, settle=partial(writer.flush, None))
                made += (repeats + 2) * calls
                _add_case(result, split, f"{case}, {floor_name}", runs, held=False)
        finally:
            driver.close()
            writer.close()
        checks.append(f"{floor_name}: {stored()} records stored for {made} requests")
    return checks


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
            made = 0
            try:
                for case, bare, wrapped in _cases(driver, ASGIAuditMiddleware, AuditMiddleware):
                    runs = measure(bare, wrapped, calls, repeats)
                    made += (repeats + 2) * calls
                    _add_case(
                        result, split, f"{case}, {sink_name}", runs, held=sink_name == "default SQLite store"
                    )
            finally:
                driver.close()
                audit_config.reset()  # closes the sink: everything stored
            stored = _stored(sink_name, Path(tmp), client, prefix) - before
            checks.append(f"{sink_name}: {stored} records stored for {made} audited requests")
            if stored != made:
                raise RuntimeError(f"{sink_name}: {stored} records stored for {made} audited requests")
        checks += _floors(result, split, Path(tmp), calls, repeats)
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
        "floor: not audit-middleware but benchmarks/floor.py, the least any audit middleware must do (raw "
        "facts in a dict on a queue; one thread appending JSON lines, or inserting rows into a table "
        "without an index): the figure a target can be read against on this machine",
        *checks,
    ]
    if node_problem is not None:
        result.notes.append(f"OpenSearch sink not measured: {node_problem}")
    return result
