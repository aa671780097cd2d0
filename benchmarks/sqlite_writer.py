"""Rows/s of the SQLite writer beside a raw, unindexed ``executemany`` of the same rows, in one run.

The rows are the query benchmark's synthetic records (``benchmarks.query_stores``: 20
tenants, ~5,000 users, 1.2-1.4 KB documents), built once with ``schema.row_of``.

1. **Sustained writes, interleaved.** The rows go, 10,000 at a time, alternately into a
   raw file (the same columns and page size, no index, no constraint, no full-text search: the floor)
   and into a real store (``SQLiteSink``'s ``_write_transaction``: schema version 4,
   ``events_by_time``, the UNIQUE key, FTS5, ``actions``, ``events_by_chain`` and the hash
   chain's link of every row), both in 1,000-row transactions, so both files grow alike
   and machine load hits both alike. The store's rows are the writer's own pending rows
   (``sinks.chain.pending_row``, built beforehand like the raw rows; their build time,
   content digest included, is printed beside).
2. **End to end:** ``SQLiteSink.emit()`` of the events from one thread, then ``flush()``:
   the background writer builds each row (``to_document()`` + JSON) and writes it.
3. **Bulk load:** ``sqlite.bulk.load_rows`` (what ``SQLiteSink.load`` and ``audit-middleware
   import`` run) of the same rows into an empty store (indexes and full-text search built
   after the rows; the rows linked to the chain as they go in), of the writer's pending
   rows, beside the raw insert of the same rows in one transaction.
4. **A slow disk:** every transaction is made to take 5 ms plus 0.5 ms per row longer (a
   wrapper around ``_write_transaction``: a disk that absorbs under 2,000 rows/s), while
   events are offered at a steady 8,000/s with a 2,000-event queue. The policy is back-pressure:
   once the queue is full, ``emit`` stores its event itself. The figures are ``emit``'s
   latency with the normal and the slow disk, and the count of stored records (all of
   them: never a silent loss).
5. **Beside a busy thread:** the store's 1,000-row transactions while another thread of the
   process runs Python non-stop (a server's request thread under load), alternating with
   the same transactions alone. sqlite3 releases the GIL for every statement it steps, and
   getting it back beside a busy thread can take a switch interval (5 ms), so the writer
   stores a batch in a few multi-row statements (``schema.ROWS_PER_STATEMENT``); beside it,
   the raw one-statement-per-row ``executemany`` of 1,000 rows, alone and beside the thread.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from audit_middleware.model.event import AuditEvent
from audit_middleware.sinks import sqlite as sqlite_sink
from audit_middleware.sinks.chain import ChainPolicy, PendingRow, SQLiteChain, pending_row
from audit_middleware.sinks.sqlite import SQLiteSink
from audit_middleware.sqlite.bulk import load_rows
from audit_middleware.sqlite.connection import ConnectionPool
from audit_middleware.sqlite.migrations import PAGE_SIZE
from audit_middleware.sqlite.schema import insert_only, row_of
from benchmarks.common import Result, Row, Settings, Table, fmt, median, percentile, render
from benchmarks.query_stores import SEED, EventStream, Population

NAME = "sqlite_writer"
TARGET_ROWS_S = 30_000.0
TARGET_RATIO = 0.2
ROUND = 10_000  # rows per interleaved round
BATCH = 1_000  # rows per transaction, as the background writer commits
SLOW_COMMIT_S = 0.005
SLOW_ROW_S = 0.0005
OFFERED_PER_S = 8_000
SLOW_QUEUE = 2_000
RAW_COLUMNS = (
    "tenant, unix_ms, event_id, action, action_label, resource_type, resource_id, resource_name, "
    "user_id, user_email, effective_user_id, effective_user_email, project, outcome, document"
)
RAW_INSERT = f"INSERT INTO events ({RAW_COLUMNS}) VALUES ({', '.join('?' * 15)})"
RAW_TABLE = (
    "CREATE TABLE events (seq INTEGER PRIMARY KEY, tenant TEXT, unix_ms INTEGER, event_id TEXT, "
    "action TEXT, action_label TEXT, resource_type TEXT, resource_id TEXT, resource_name TEXT, "
    "user_id TEXT, user_email TEXT, effective_user_id TEXT, effective_user_email TEXT, project TEXT, "
    "outcome TEXT, document TEXT)"
)


def _raw_file(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    # the store's page size: the floor must not be slower for a setting the store chose differently
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(RAW_TABLE)
    return conn


def _in_transactions(conn: sqlite3.Connection, rows: Sequence[Any], write: Callable[..., Any]) -> float:
    started = time.perf_counter()
    for start in range(0, len(rows), BATCH):
        write(conn, rows[start : start + BATCH])
    return time.perf_counter() - started


def _raw_transaction(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(RAW_INSERT, rows)
    conn.execute("COMMIT")


def _sustained(directory: Path, rows: list[tuple[Any, ...]], pending: list[PendingRow]) -> dict[str, Any]:
    raw = _raw_file(directory / "raw.sqlite3")
    pool = ConnectionPool(directory / "store.sqlite3", busy_timeout=5.0, synchronous="NORMAL")
    raw_s: list[float] = []
    store_s: list[float] = []
    chain = SQLiteChain(ChainPolicy())

    def linked(conn: sqlite3.Connection, batch: Sequence[PendingRow]) -> int:
        return sqlite_sink._write_transaction(conn, batch, chain)

    with pool.borrow() as store:
        for number, start in enumerate(range(0, len(rows), ROUND)):
            chunk, pending_chunk = rows[start : start + ROUND], pending[start : start + ROUND]
            pair = [
                (raw_s, partial(_in_transactions, raw, chunk, _raw_transaction)),
                (store_s, partial(_in_transactions, store, pending_chunk, linked)),
            ]
            for seconds, work in pair if number % 2 == 0 else pair[::-1]:
                seconds.append(work())
    raw.close()
    pool.close()
    ratios = [r / s for r, s in zip(raw_s, store_s, strict=True)]
    return {
        "raw_rows_s": len(rows) / sum(raw_s),
        "store_rows_s": len(rows) / sum(store_s),
        "ratio_median": median(ratios),
        "rounds": len(ratios),
        "per_round": [(ROUND / r, ROUND / s) for r, s in zip(raw_s, store_s, strict=True)],
    }


def _end_to_end(directory: Path, events: list[AuditEvent]) -> dict[str, Any]:
    with SQLiteSink(
        directory / "emit.sqlite3", install_signal_handlers=False, queue_size=len(events)
    ) as sink:
        started = time.perf_counter()
        for event in events:
            sink.emit(event)
        offered = time.perf_counter() - started
        sink.flush()
        seconds = time.perf_counter() - started
        written = sink.written
    return {"rows_s": len(events) / seconds, "emit_us": offered / len(events) * 1e6, "written": written}


def _bulk(directory: Path, rows: list[tuple[Any, ...]], pending: list[PendingRow]) -> dict[str, Any]:
    raw = _raw_file(directory / "raw-bulk.sqlite3")
    started = time.perf_counter()
    raw.execute("BEGIN")
    raw.executemany(RAW_INSERT, rows)
    raw.execute("COMMIT")
    raw_s = time.perf_counter() - started
    raw.close()
    pool = ConnectionPool(directory / "bulk.sqlite3", busy_timeout=5.0, synchronous="NORMAL")
    chain = SQLiteChain(ChainPolicy())  # as SQLiteSink.load: the loaded rows are chained
    with pool.borrow() as conn:
        started = time.perf_counter()
        stored = load_rows(conn, pending, insert=chain.insert, load=partial(chain.insert, store=insert_only))
        load_s = time.perf_counter() - started
    pool.close()
    return {"raw_rows_s": len(rows) / raw_s, "load_rows_s": len(rows) / load_s, "stored": stored}


def _paced(sink: SQLiteSink, events: list[AuditEvent]) -> list[float]:
    """``emit`` each event at ``OFFERED_PER_S``; returns each call's latency in µs."""
    latencies = []
    started = time.perf_counter()
    for number, event in enumerate(events):
        due = started + number / OFFERED_PER_S
        while time.perf_counter() < due:
            pass
        mark = time.perf_counter()
        sink.emit(event)
        latencies.append((time.perf_counter() - mark) * 1e6)
    return latencies


def _slow_disk(directory: Path, events: list[AuditEvent]) -> dict[str, dict[str, float]]:
    original = sqlite_sink._write_transaction
    out: dict[str, dict[str, float]] = {}
    slow_label = f"slow disk (+{SLOW_COMMIT_S * 1000:.0f} ms per commit, +{SLOW_ROW_S * 1000:.1f} ms per row)"
    for label, delay in (("normal disk", False), (slow_label, True)):

        def slow(
            conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], chain: SQLiteChain, pause: bool = delay
        ) -> int:
            if pause:
                time.sleep(SLOW_COMMIT_S + SLOW_ROW_S * len(rows))
            return original(conn, rows, chain)

        sqlite_sink._write_transaction = slow
        try:
            path = directory / f"paced-{int(delay)}.sqlite3"
            with SQLiteSink(path, install_signal_handlers=False, queue_size=SLOW_QUEUE) as sink:
                started = time.perf_counter()
                latencies = sorted(_paced(sink, events))
                sink.flush()
                seconds = time.perf_counter() - started
        finally:
            sqlite_sink._write_transaction = original
        with sqlite3.connect(path) as conn:
            stored = int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
        out[label] = {
            "p50_us": percentile(latencies, 50),
            "p99_us": percentile(latencies, 99),
            "max_us": latencies[-1],
            "stored": stored,
            "offered": len(events),
            "rows_s": len(events) / seconds,
        }
    return out


@contextlib.contextmanager
def _busy_thread() -> Iterator[None]:
    """Another thread running Python the whole time, as a loaded server's request thread does."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(50))

    thread = threading.Thread(target=spin, name="busy", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _beside_busy_thread(
    directory: Path, rows: list[tuple[Any, ...]], pending: list[PendingRow], rounds: int
) -> dict[str, Any]:
    pool = ConnectionPool(directory / "busy.sqlite3", busy_timeout=5.0, synchronous="NORMAL")
    chain = SQLiteChain(ChainPolicy())
    alone_s: list[float] = []
    busy_s: list[float] = []

    def linked(conn: sqlite3.Connection, batch: Sequence[PendingRow]) -> int:
        return sqlite_sink._write_transaction(conn, batch, chain)

    size = 2 * BATCH
    with pool.borrow() as store:
        for number in range(rounds):
            alone = pending[2 * number * size : (2 * number + 1) * size]
            beside = pending[(2 * number + 1) * size : (2 * number + 2) * size]
            alone_s.append(_in_transactions(store, alone, linked))
            with _busy_thread():
                busy_s.append(_in_transactions(store, beside, linked))
    pool.close()
    raw = _raw_file(directory / "busy-raw.sqlite3")
    raw_alone = _in_transactions(raw, rows[:BATCH], _raw_transaction)
    with _busy_thread():
        raw_busy = _in_transactions(raw, rows[BATCH : 2 * BATCH], _raw_transaction)
    raw.close()
    return {
        "alone_rows_s": rounds * size / sum(alone_s),
        "busy_rows_s": rounds * size / sum(busy_s),
        "raw_per_row_alone_ms": raw_alone * 1000,
        "raw_per_row_busy_ms": raw_busy * 1000,
    }


def _events(count: int) -> Iterator[AuditEvent]:
    anchor = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    return iter(EventStream(Population(SEED), count, anchor))


def run(settings: Settings, records: int | None = None) -> Result:
    """Write the same rows raw and through the store, interleaved; then end to end, bulk, slow disk."""
    count = records or settings.pick(200_000, 40_000)
    events = list(_events(count))
    rows = [row_of(event) for event in events]
    started = time.perf_counter()
    pending = [pending_row(event) for event in events]  # the writer's row build, content digest included
    pending_us = (time.perf_counter() - started) / count * 1e6
    paced = events[: settings.pick(24_000, 8_000)]
    result = Result(NAME, f"SQLite writer over {count:,} records: store layout vs raw unindexed executemany")
    with tempfile.TemporaryDirectory(prefix="audit-bench-writer-") as tmp:
        directory = Path(tmp)
        sustained = _sustained(directory, rows, pending)
        end_to_end = _end_to_end(directory, events)
        bulk = _bulk(directory, rows, pending)
        slow = _slow_disk(directory, paced)
        busy = _beside_busy_thread(directory, rows, pending, rounds=settings.pick(5, 2))
    store_rate, raw_rate = sustained["store_rows_s"], sustained["raw_rows_s"]
    result.rows += [
        Row(
            "writer rows/s, 1,000-row transactions (baseline: raw unindexed executemany)",
            "rows/s",
            raw_rate,
            store_rate,
            ratio=store_rate / raw_rate,
            target=f">= {TARGET_ROWS_S:,.0f} and >= {TARGET_RATIO} of raw",
            met=store_rate >= TARGET_ROWS_S and store_rate / raw_rate >= TARGET_RATIO,
            note=f"median per-round ratio {sustained['ratio_median']:.2f}; the rows were built before, "
            f"at {pending_us:.1f} µs each (document, columns, content digest) on the writer thread",
        ),
        Row(
            "SQLiteSink.emit() + flush(), rows built on the writer (baseline: raw)",
            "rows/s",
            raw_rate,
            end_to_end["rows_s"],
            ratio=end_to_end["rows_s"] / raw_rate,
            note=f"emit {end_to_end['emit_us']:.1f} µs on the caller",
        ),
        Row(
            "bulk load (sqlite.bulk.load_rows: import) into an empty store (baseline: raw, one transaction)",
            "rows/s",
            bulk["raw_rows_s"],
            bulk["load_rows_s"],
            ratio=bulk["load_rows_s"] / bulk["raw_rows_s"],
            target=f">= {TARGET_ROWS_S:,.0f}",
            met=bulk["load_rows_s"] >= TARGET_ROWS_S,
        ),
        Row(
            "writer rows/s beside a thread running Python (baseline: the writer alone)",
            "rows/s",
            busy["alone_rows_s"],
            busy["busy_rows_s"],
            ratio=busy["busy_rows_s"] / busy["alone_rows_s"],
            note=f"raw executemany of {BATCH:,} rows, one statement per row: "
            f"{busy['raw_per_row_alone_ms']:.1f} ms alone, "
            f"{busy['raw_per_row_busy_ms']:.0f} ms beside the thread",
        ),
    ]
    result.tables.append(
        Table(
            f"emit() latency at {OFFERED_PER_S:,} events/s offered, queue of {SLOW_QUEUE:,} (policy: block)",
            ["disk", "p50 µs", "p99 µs", "max µs", "stored / offered", "rows/s"],
            [
                [
                    label,
                    fmt(f["p50_us"]),
                    fmt(f["p99_us"]),
                    fmt(f["max_us"]),
                    f"{f['stored']:,} / {f['offered']:,}",
                    fmt(f["rows_s"]),
                ]
                for label, f in slow.items()
            ],
        )
    )
    result.tables.append(
        Table(
            "sustained rounds (rows/s within each round of 10,000, raw | store)",
            ["round", "raw", "store"],
            [[str(n + 1), fmt(r), fmt(s)] for n, (r, s) in enumerate(sustained["per_round"])],
        )
    )
    result.notes += [
        "raw and store rounds alternate (order flipped every round) and both files grow alike",
        "the machine's 2 cores are shared with other work: compare the ratio, not the absolute rate",
        "slow disk: every commit sleeps as the table says; a full queue makes emit() store "
        "its event on the caller's thread, so latency rises and nothing is lost",
    ]
    result.data = {
        "sustained": sustained,
        "end_to_end": end_to_end,
        "bulk": bulk,
        "slow_disk": slow,
        "beside_busy_thread": busy,
    }
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.sqlite_writer [--records N] [--quick]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sqlite_writer")
    parser.add_argument("--records", type=int, help="records to write (default 200,000; --quick 40,000)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    result = run(Settings(quick=args.quick), args.records)
    print(render(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
