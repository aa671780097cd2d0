"""The Audit Logs page over a million-record SQLite store: the first page and every filter change.

The target (issue 15): on a 1M-record SQLite store, the first page and every filter change
answer in under 200 ms on this machine.

The records are the query-store benchmark's (``benchmarks.query_stores``: 20 tenants, the
largest holding about 30 %, 5,000 users, all 17 product actions over 60 days, from a
fixed seed), written by ``SQLiteSink`` into a temporary file, or into ``--store PATH``,
which is kept and reused by later runs when it already holds that many records (loading
takes minutes).

The viewer (``AuditViewer`` mounted with ``mount_wsgi``, reads recorded into a sink that
drops them) runs in a threaded WSGI server on 127.0.0.1; each case is one filter set of
the page's form. For each, over HTTP with a fresh connection per request:

* ``page``: ``GET /audit/?filters``, what a reload or a shared link asks for (the whole
  HTML page with the first 50 entries);
* ``change``: ``GET /audit/entries?filters`` with the page's header, what the page's
  script sends when a filter changes (the rows fragment);

and, as the baseline in the same process, ``store.search(query)`` for the same query:
the store's share of the answer. Every case runs once cold ("first"), then the cases
take turns for ``runs`` rounds (p50 / p95). Relative date ranges are re-evaluated per
request, as a person clicking again would.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from audit_middleware.model.event import Actor, AuditEvent
from audit_middleware.query.model import AuditQuery
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.reads import without_reads
from audit_middleware.sinks.base import Sink
from audit_middleware.sinks.sqlite import SQLiteSink
from audit_middleware.viewer import Access, AuditViewer
from audit_middleware.viewer.wsgi import mount_wsgi
from benchmarks.common import Result, Row, Settings, Table, fmt, median, percentile, render
from benchmarks.query_stores import SEED, EventStream, Population, _load_sqlite

NAME = "viewer_pages"
TARGET_MS = 200.0
PAGE_SIZE = 50


class _DropSink(Sink):
    """Where the benchmark's own read records go: nowhere (they would grow the store meanwhile)."""

    def emit(self, event: AuditEvent) -> None:
        """Drop ``event``."""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on the benchmark's output."""


def _cases(population: Population) -> list[tuple[str, dict[str, str]]]:
    """Each control of the page's form, alone and combined: (label, URL parameters)."""
    users = population.users_by_activity(population.big)
    typical, rare = users[min(9, len(users) - 1)], users[-1]
    pods = population.big.resources["pod"]
    three_days_ago = (datetime.now(timezone.utc) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    return [
        ("first page (no filter)", {}),
        ("action: create", {"action": "create"}),
        ("action: update", {"action": "update"}),
        ("action: delete", {"action": "delete"}),
        ("action: start / stop", {"action": "start-stop"}),
        ("action: login failed", {"action": "login_failed"}),
        ("action: permissions changed", {"action": "permissions_changed"}),
        ("resource type: pod", {"type": "pod"}),
        ("resource type: virtual machine", {"type": "virtual_machine"}),
        ("resource type: storage", {"type": "storage"}),
        ("resource type: ssh key", {"type": "ssh_key"}),
        ("last 24 hours", {"range": "24h"}),
        ("last 7 days", {"range": "7d"}),
        ("last 30 days", {"range": "30d"}),
        ("custom range (last 3 days)", {"range": "custom", "from": three_days_ago}),
        ("user (10th busiest)", {"user": str(typical.actor.email)}),
        ("user (least active)", {"user": str(rare.actor.email)}),
        ("search 'web-fr'", {"q": "web-fr"}),
        (f"search one name '{pods[len(pods) // 3].name}'", {"q": str(pods[len(pods) // 3].name)}),
        ("update + pod + 7 days", {"action": "update", "type": "pod", "range": "7d"}),
        ("reads of the log shown", {"reads": "1"}),
    ]


def _query(tenant: str, params: dict[str, str]) -> AuditQuery:
    """The store query the page builds for ``params`` (as ``viewer.filters`` does)."""
    custom = params.get("range") == "custom"
    query = AuditQuery.build(
        tenant,
        action=params.get("action"),
        resource_type=params.get("type"),
        user=params.get("user"),
        since=params.get("range") if params.get("range") and not custom else None,
        start=params.get("from") if custom else None,
        search=params.get("q"),
        page_size=PAGE_SIZE,
    )
    return query if params.get("reads") else without_reads(query)


@contextmanager
def _serving(viewer: AuditViewer) -> Iterator[int]:
    def not_found(_environ: Any, start_response: Any) -> list[bytes]:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]

    server = make_server("127.0.0.1", 0, mount_wsgi(not_found, "/audit", viewer), _Server, _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[float, int, int]:
    """One request on a new connection: (milliseconds to the last byte, status, body bytes)."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    connection.close()
    return elapsed, response.status, len(body)


def _store(path: Path | None, stream: EventStream, directory: Path) -> tuple[Path, dict[str, Any]]:
    """A store file holding ``stream``'s records: ``path`` reused when already full, else loaded."""
    target = path or directory / "viewer-bench.sqlite3"
    if target.is_file():
        with SQLiteStore(target) as store:
            held = sum(store.count(AuditQuery.build(t.scope.id)) for t in stream.population.tenants)
        if held >= stream.count:
            return target, {"reused": True, "records": held}
        raise SystemExit(f"{target} holds {held:,} records, not {stream.count:,}: remove it or pick another")
    print(f"  loading {stream.count:,} records into {target}", file=sys.stderr, flush=True)
    with SQLiteSink(target) as sink:
        loaded = _load_sqlite(sink, stream)
    return target, {"reused": False, "records": loaded["inserted"], "load_s": loaded["wall_s"]}


def run(settings: Settings, records: int | None = None, store_path: Path | None = None) -> Result:
    """Time the page and each filter change over HTTP, beside the store's own search."""
    count = records or settings.pick(1_000_000, 100_000)
    runs = settings.pick(10, 5)
    population = Population(SEED)
    anchor = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    stream = EventStream(population, count, anchor)
    tenant = population.big.scope.id
    cases = _cases(population)
    result = Result(
        NAME,
        f"Audit Logs page over {count:,} records (SQLite): the page and each filter change",
        baseline_label="store.search",
        measured_label="over HTTP",
        settings={"records": count, "runs": runs, "page_size": PAGE_SIZE, "tenant": tenant},
    )
    with tempfile.TemporaryDirectory(prefix="audit-bench-viewer-") as tmp:
        path, loaded = _store(store_path, stream, Path(tmp))
        result.settings.update(loaded)
        store = SQLiteStore(path)
        reader = Access(tenant, Actor(id="bench", email="bench@example.com"))
        viewer = AuditViewer(authorize=lambda _request: reader, store=store, sink=_DropSink())
        timings: dict[str, dict[str, list[float]]] = {
            label: {"store": [], "page": [], "change": []} for label, _ in cases
        }
        first: dict[str, dict[str, float]] = {}
        sizes: dict[str, int] = {}
        with _serving(viewer) as port:
            for round_ in range(runs + 1):
                for label, params in cases:
                    query_string = urlencode(params)
                    mark = time.perf_counter()
                    found = store.search(_query(tenant, params)).events
                    store_ms = (time.perf_counter() - mark) * 1000
                    page_ms, status, _ = _get(port, f"/audit/?{query_string}", {})
                    change_ms, change_status, _ = _get(
                        port, f"/audit/entries?{query_string}", {"X-Audit-Viewer": "1"}
                    )
                    assert status == change_status == 200, (label, status, change_status)
                    if round_ == 0:
                        first[label] = {"store": store_ms, "page": page_ms, "change": change_ms}
                        sizes[label] = len(found)
                    else:
                        for key, value in (("store", store_ms), ("page", page_ms), ("change", change_ms)):
                            timings[label][key].append(value)
        store.close()
    rows = []
    worst = 0.0
    for label, _ in cases:
        series = {key: sorted(values) for key, values in timings[label].items()}
        p95 = {key: percentile(values, 95) for key, values in series.items()}
        worst = max(worst, p95["page"], p95["change"], first[label]["page"], first[label]["change"])
        rows.append(
            [
                label,
                str(sizes[label]),
                fmt(first[label]["store"], " ms"),
                fmt(first[label]["change"], " ms"),
                fmt(first[label]["page"], " ms"),
                fmt(median(series["store"]), " ms"),
                fmt(p95["store"], " ms"),
                fmt(median(series["change"]), " ms"),
                fmt(p95["change"], " ms"),
                fmt(p95["page"], " ms"),
            ]
        )
        result.data[label] = {"first": first[label], "runs": timings[label], "rows": sizes[label]}
        slowest = max(p95["page"], p95["change"], first[label]["page"], first[label]["change"])
        result.rows.append(
            Row(
                label,
                "ms",
                p95["store"],
                slowest,
                target=f"< {TARGET_MS:.0f} ms (first run and p95, page and change)",
                met=slowest < TARGET_MS,
            )
        )
    result.tables.append(
        Table(
            "per case (ms): first run, then p50 / p95 over the runs",
            [
                "case",
                "rows",
                "first store",
                "first change",
                "first page",
                "store p50",
                "store p95",
                "change p50",
                "change p95",
                "page p95",
            ],
            rows,
        )
    )
    result.notes.append(f"slowest answer of any case (first run or p95): {worst:.1f} ms")
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.viewer_pages [--records N] [--quick] [--store PATH]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.viewer_pages", description=__doc__)
    parser.add_argument("--records", type=int, help="records (default 1,000,000; --quick 100,000)")
    parser.add_argument("--quick", action="store_true", help="100,000 records, 5 runs per case")
    parser.add_argument("--store", type=Path, help="a store file to create once and reuse")
    parser.add_argument(
        "--results-dir", type=Path, default=Path(__file__).resolve().parent / "results", help="JSON goes here"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    result = run(Settings(quick=args.quick), args.records, args.store)
    result.seconds = time.monotonic() - started
    print(render(result), flush=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = args.results_dir / f"{stamp}-{NAME}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps({"created": stamp, "results": [result.to_json()]}, indent=2, default=str))
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
