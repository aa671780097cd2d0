"""What verify reads: the SQLite store in chain order, and NDJSON files in any order through sorted runs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from audit_middleware.query import verify_sources
from audit_middleware.query.verify_sources import FileSource, SQLiteSource, read_anchor
from audit_middleware.sqlite.schema import SQLiteStoreError
from tests.chain_support import chained_store, documents


def test_a_shuffled_file_comes_out_in_chain_order_across_many_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Records in random order, sorted in runs of 7 and merged, come out by chain and sequence."""
    monkeypatch.setattr(verify_sources, "_RUN", 7)
    first, second = chained_store(tmp_path / "a"), chained_store(tmp_path / "b")
    first.fill(30)
    second.fill(25)
    lines = [text for _, text in documents(first)] + [text for _, text in documents(second)]
    lines.append('{"event": {"id": "no-chain"}, "@timestamp": "2026-01-01T00:00:00.000Z"}')
    random.Random(7).shuffle(lines)
    path = tmp_path / "mixed.ndjson"
    path.write_text("\n".join(lines) + "\n" + first.anchor.read_text())
    source = FileSource(path)
    entries = list(source.entries())
    chained = [(entry.chain, entry.seq) for entry in entries if entry.chain is not None]
    assert chained == sorted(chained)
    assert len(chained) == 55
    assert entries[-1].chain is None  # records without a chain come last
    assert len(source.checkpoints()) == 3


def test_sqlite_source_reads_chains_then_unchained(tmp_path: Path):
    """The store's records come by chain and sequence, whatever their row order."""
    store = chained_store(tmp_path)
    store.fill(12)
    store.execute(  # move record 3 to the end of the table (a new row id), keeping its document
        "INSERT INTO events (tenant, unix_ms, event_id, action, action_label, outcome, document) "
        "SELECT tenant, unix_ms, event_id || 'x', action, action_label, outcome, document "
        "FROM events WHERE seq = 3",
        "DELETE FROM events WHERE seq = 3",
    )
    seqs = [entry.seq for entry in SQLiteSource(store.path).entries()]
    assert seqs == list(range(1, 13))
    assert SQLiteSource(store.path).count() == 12


def test_a_missing_or_unchained_store_is_a_clear_error(tmp_path: Path):
    """No file, or a file of an older schema, raises SQLiteStoreError saying which."""
    with pytest.raises(SQLiteStoreError, match="no audit store"):
        SQLiteSource(tmp_path / "none.sqlite3").count()
    import sqlite3  # noqa: PLC0415

    old = tmp_path / "old.sqlite3"
    sqlite3.connect(old).execute("PRAGMA user_version = 2").connection.close()
    with pytest.raises(SQLiteStoreError, match="no hash chains yet"):
        SQLiteSource(old).count()


def test_damaged_anchor_lines_are_reported(tmp_path: Path):
    """A line of an anchor file that is not a checkpoint comes back as its error, not a crash."""
    anchor = tmp_path / "anchor.jsonl"
    anchor.write_text('{"checkpoint": {"chain": "c"}}\nnot json\n')
    problems = list(read_anchor(anchor))
    assert len(problems) == 2
    assert all(isinstance(problem, str) for problem in problems)


def test_one_tenants_file_with_link_lines_verifies_on_its_own(tmp_path: Path):
    """A file of acme's records, with only link and digest lines for bigcorp's between them, verifies."""
    import orjson  # noqa: PLC0415

    from audit_middleware.model.chain import content_digest  # noqa: PLC0415
    from tests.chain_support import chained_store as make  # noqa: PLC0415
    from tests.query.conftest import make_event  # noqa: PLC0415

    store = make(tmp_path)
    with store.sink() as sink:
        for index in range(20):
            sink.write([make_event("create", tenant="acme" if index % 3 else "bigcorp", ago_ms=20 - index)])
    lines = []
    for _, text in documents(store):
        document = orjson.loads(text)
        if document["organization"]["id"] == "acme":
            lines.append(text)
        else:
            link = dict(document["audit"]["chain"], digest=content_digest(document).hex())
            lines.append(orjson.dumps({"chain_link": link}).decode())
    assert not any("bigcorp" in line for line in lines)
    path = tmp_path / "acme.ndjson"
    path.write_text("\n".join(lines) + "\n" + store.anchor.read_text())
    report = store.verify_file(path)
    assert report.intact, report.as_json()
    assert report.chains[0].verified == 20
    forged = [line.replace('"u1"', '"u2"') if '"chain_link"' not in line else line for line in lines]
    path.write_text("\n".join(forged) + "\n" + store.anchor.read_text())
    assert not store.verify_file(path).intact
