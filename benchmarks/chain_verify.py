"""The cost of the hash chain on the SQLite write path, and ``verify`` over a million records.

Write path: the same realistic records (``benchmarks.query_stores``' generator, fixed
seed) are written by ``SQLiteSink.write`` in batches of 1,000 (the background writer's
transaction size) into two fresh files of the same schema, alternating batch by batch
so both see the same machine load: the baseline builds the rows without the chain
(``schema.row_of``) and inserts them as the layout does (``schema.insert_rows``); the
measured one is ``SQLiteSink.write`` as shipped (each row's RFC 8785 content digest before
the transaction, then in it: read the head, link each row, encode it, move the head,
checkpoint every 1,000). Also printed: the digest and the link step alone per record.

Verify: ``N`` records (1,000,000; 100,000 with ``--quick``; ``AUDIT_BENCH_CHAIN_RECORDS``)
linked by the writer's own chain step into a file (see ``_load``), then ``verify_chains``
over ``SQLiteSource`` (one streaming cursor) with signature checks, timed, with the peak
of Python allocations (tracemalloc, in a second, shorter run) to show the memory stays flat. The baseline
beside it is the raw read of the same rows (``SELECT document`` and ``orjson.loads``),
which verify cannot beat.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import orjson

from audit_middleware.model.chain import prepared_for_link
from audit_middleware.model.checkpoints import KeyRing, Signer, generate_key_pem
from audit_middleware.model.event import AuditEvent
from audit_middleware.query.verify import verify_chains
from audit_middleware.query.verify_sources import SQLiteSource
from audit_middleware.sinks.chain import ChainPolicy, SQLiteChain, pending_row
from audit_middleware.sinks.sqlite import SQLiteSink
from audit_middleware.sqlite.schema import insert_rows, row_of
from benchmarks.common import Result, Row, Settings, Table
from benchmarks.query_stores import EventStream, Population

RECORDS_ENV = "AUDIT_BENCH_CHAIN_RECORDS"
BATCH = 1000


def _write_plain(conn: sqlite3.Connection, events: Sequence[AuditEvent]) -> None:
    """What ``SQLiteSink.write`` does without the chain: the rows, one transaction, search fed."""
    rows = [row_of(event) for event in events]
    conn.execute("BEGIN IMMEDIATE")
    insert_rows(conn, rows)
    conn.execute("COMMIT")


def _write_cost(stream: EventStream, scratch: Path, signer: Signer) -> dict[str, float]:
    policy = ChainPolicy(signer=signer, every=1000)
    SQLiteSink(scratch / "plain.sqlite3", install_signal_handlers=False).close()  # the same schema
    plain = sqlite3.connect(scratch / "plain.sqlite3", isolation_level=None)
    chained = SQLiteSink(scratch / "chained.sqlite3", chain=policy, install_signal_handlers=False)
    writers: dict[str, Callable[[Sequence[AuditEvent]], object]] = {
        "plain": lambda batch: _write_plain(plain, batch),
        "chained": chained.write,
    }
    spent = {"plain": 0.0, "chained": 0.0}
    records = 0
    for batch in stream.chunks(BATCH):
        for name, write in writers.items():
            mark = time.perf_counter()
            write(batch)
            spent[name] += time.perf_counter() - mark
        records += len(batch)
    plain.close()
    chained.close()
    # the chain's own steps, alone: the digest (before the transaction), the link and encoding (in it)
    sample = next(EventStream(stream.population, 20_000, stream.end).chunks(20_000))
    documents = [event.to_document() for event in sample]
    mark = time.perf_counter()
    for document in documents:
        prepared_for_link(document)
    digest_us = (time.perf_counter() - mark) / len(sample) * 1e6
    pending = [pending_row(event) for event in sample]
    head = type("Head", (), {"chain": "bench", "seq": 0, "hash": "0" * 64})()
    mark = time.perf_counter()
    SQLiteChain(policy)._link(head, pending)
    link_us = (time.perf_counter() - mark) / len(sample) * 1e6
    return {
        "records": records,
        "plain_rate": records / spent["plain"],
        "chained_rate": records / spent["chained"],
        "plain_us": spent["plain"] / records * 1e6,
        "chained_us": spent["chained"] / records * 1e6,
        "digest_us": digest_us,
        "link_us": link_us,
    }


def _load(stream: EventStream, path: Path, signer: Signer) -> float:
    """Write ``stream`` chained into ``path``: the writer's own link step, in large transactions.

    The full-text triggers and the filter indexes are dropped for the load (verify reads
    neither: it walks ``events_by_chain``), because at a million records on a shared
    2-core machine they make the load, not the verify, the long part. Rows are linked by
    ``SQLiteChain`` exactly as the writer links them, checkpoints every 1,000 included.
    """
    SQLiteSink(path, install_signal_handlers=False).close()  # the schema, at its current version
    conn = sqlite3.connect(path, isolation_level=None)
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_schema WHERE type IN ('index', 'trigger') AND tbl_name = 'events' "
        "AND name LIKE 'events_%' AND name != 'events_by_chain' AND sql IS NOT NULL"
    ).fetchall():
        kind = "TRIGGER" if name.startswith("events_fts") else "INDEX"
        conn.execute(f"DROP {kind} {name}")
    chain = SQLiteChain(ChainPolicy(signer=signer, every=1000))
    started = time.perf_counter()
    written = 0
    for chunk in stream.chunks(BATCH):
        conn.execute("BEGIN IMMEDIATE")
        written += chain.insert(conn, [pending_row(event) for event in chunk])
        conn.execute("COMMIT")
        if written % 100_000 < BATCH:
            print(f"  chain: {written:,} written", file=sys.stderr, flush=True)
    conn.execute("BEGIN IMMEDIATE")
    chain.checkpoint(conn)
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - started


def _raw_read(path: Path) -> float:
    started = time.perf_counter()
    with sqlite3.connect(path) as conn:
        for (document,) in conn.execute("SELECT document FROM events ORDER BY chain_id, chain_seq, seq"):
            orjson.loads(document)
    return time.perf_counter() - started


def _verify(path: Path, keys: KeyRing, *, limit_memory: bool = False) -> tuple[float, int, int]:
    source = SQLiteSource(path)
    entries = source.entries()
    if limit_memory:
        tracemalloc.start()
    started = time.perf_counter()
    report = verify_chains(entries, stored_checkpoints=source.checkpoints(), keys=keys)
    seconds = time.perf_counter() - started
    peak = 0
    if limit_memory:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert report.intact, report.as_json()
    return seconds, sum(chain.verified for chain in report.chains), peak


def run(settings: Settings) -> Result:
    count = int(os.environ.get(RECORDS_ENV) or settings.pick(1_000_000, 100_000))
    write_count = settings.pick(20_000, 5_000)
    population = Population()
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    signer = Signer.from_pem(generate_key_pem())
    keys = KeyRing.from_pem([signer.public_pem()])
    result = Result(
        "chain_verify",
        "hash chain: write-path cost (SQLite) and verify speed",
        baseline_label="no chain / raw read",
        measured_label="chained / verify",
        settings={"records": count, "write_records": write_count, "batch": BATCH},
    )
    with tempfile.TemporaryDirectory(prefix="audit-bench-chain-") as scratch_dir:
        scratch = Path(scratch_dir)
        cost = _write_cost(EventStream(population, write_count, end), scratch, signer)
        path = scratch / "verify.sqlite3"
        load_s = _load(EventStream(population, count, end), path, signer)
        raw_s = _raw_read(path)
        verify_s, verified, _ = _verify(path, keys)
        memory_path = scratch / "memory.sqlite3"
        _load(EventStream(population, min(count, 100_000), end), memory_path, signer)
        _, small_verified, peak = _verify(memory_path, keys, limit_memory=True)
    result.rows = [
        Row(
            "SQLite write, records/s",
            "rec/s",
            cost["plain_rate"],
            cost["chained_rate"],
            ratio=cost["chained_rate"] / cost["plain_rate"],
        ),
        Row(
            "SQLite write, µs per record",
            "µs",
            cost["plain_us"],
            cost["chained_us"],
            delta=cost["chained_us"] - cost["plain_us"],
        ),
        Row(
            f"verify {verified:,} records, records/s",
            "rec/s",
            count / raw_s,
            verified / verify_s,
            ratio=(verified / verify_s) / (count / raw_s),
        ),
    ]
    result.tables.append(
        Table(
            "details",
            ["figure", "value"],
            [
                ["content digest alone (before the transaction), µs/record", f"{cost['digest_us']:.1f}"],
                ["link and encode alone (in the transaction), µs/record", f"{cost['link_us']:.1f}"],
                [f"load of {count:,} chained records, s", f"{load_s:.1f}"],
                [f"verify of {count:,} records, s", f"{verify_s:.1f}"],
                ["raw read of the same rows, s", f"{raw_s:.1f}"],
                [f"peak Python allocations verifying {small_verified:,} records, MiB", f"{peak / 2**20:.1f}"],
            ],
        )
    )
    result.notes.append(
        "The chain is built on the writer thread inside its transaction; the request path only queues."
    )
    return result
