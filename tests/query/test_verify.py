"""verify on a real SQLite file: each kind of tampering is caught and named; clean trails verify."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import orjson

from audit_middleware.model.chain import GENESIS, content_digest, link_hash, with_link
from audit_middleware.model.checkpoints import Checkpoint
from audit_middleware.model.encoding import dumps
from audit_middleware.query.verify import (
    CLOCK_SLACK_MS,
    Entry,
    StreamRetention,
    VerifyReport,
    entry_of,
    verify_chains,
)
from audit_middleware.sqlite.connection import ConnectionPool
from audit_middleware.sqlite.retention import SQLiteRetention, restore_archive
from tests.chain_support import ChainedStore, chained_store, documents, findings
from tests.query.conftest import DAY, make_event


def _document(store: ChainedStore, row: int) -> dict:
    return next(orjson.loads(text) for seq, text in documents(store) if seq == row)


def _replace(store: ChainedStore, row: int, document: dict) -> None:
    with closing(sqlite3.connect(store.path)) as conn:
        conn.execute("UPDATE events SET document = ? WHERE seq = ?", (dumps(document).decode(), row))
        conn.commit()


def test_a_clean_trail_verifies(tmp_path: Path):
    """Every record of an untouched store is verified, and every checkpoint matches."""
    store = chained_store(tmp_path)
    store.fill(95)
    report = store.verify()
    assert report.intact
    (chain,) = report.chains
    assert (chain.records, chain.verified, chain.first_seq, chain.last_seq) == (95, 95, 1, 95)
    assert chain.checkpoints == 10  # nine full intervals and the final one at close
    assert report.anchored == 10


def test_a_field_changed_with_sql_is_caught_and_named(tmp_path: Path):
    """UPDATE of one field inside the document: that record is reported modified, by seq and event id."""
    store = chained_store(tmp_path)
    store.fill(30)
    target = _document(store, 12)
    store.execute(
        "UPDATE events SET document = json_set(document, '$.user.email', 'mallory@x.io') WHERE seq = 12"
    )
    report = store.verify()
    assert not report.intact
    assert findings(report, "modified") == [(12, 12)]
    finding = report.chains[0].findings[0]
    assert finding.event_id == target["event"]["id"]
    assert finding.where == "row 12"
    assert report.chains[0].verified == 29


def test_a_deleted_record_is_missing(tmp_path: Path):
    """DELETE of two records in the middle: their sequence numbers are reported missing."""
    store = chained_store(tmp_path)
    store.fill(30)
    store.execute("DELETE FROM events WHERE seq IN (7, 8)")
    report = store.verify()
    assert findings(report, "missing") == [(7, 8)]
    assert report.chains[0].counts["missing"] == 2


def test_a_forged_record_without_a_link_is_inserted(tmp_path: Path):
    """A record slipped in with SQL (a copy of another, new id, no link) has no place in any chain."""
    store = chained_store(tmp_path)
    store.fill(20)
    forged = _document(store, 5)
    del forged["audit"]["chain"]
    forged["event"]["id"] = "01a00000-0000-7000-8000-000000000001"
    store.execute(
        "INSERT INTO events (tenant, unix_ms, event_id, action, action_label, outcome, document) "
        f"SELECT tenant, unix_ms + 1, '{forged['event']['id']}', action, action_label, outcome, "
        f"'{dumps(forged).decode()}' FROM events WHERE seq = 5"
    )
    report = store.verify()
    assert not report.intact
    assert report.inserted_count == 1
    assert report.inserted[0].event_id == forged["event"]["id"]
    assert report.chains[0].intact


def test_a_forged_record_claiming_a_place_is_inserted(tmp_path: Path):
    """A forged record with a link copied from a real one: the copy is named, the original stands."""
    store = chained_store(tmp_path)
    store.fill(20)
    forged = _document(store, 9)
    original_id = forged["event"]["id"]
    forged["event"]["id"] = "01a00000-0000-7000-8000-000000000002"
    forged["user"]["email"] = "mallory@x.io"
    chain = forged["audit"]["chain"]
    chain["hash"] = link_hash(chain["prev"], content_digest(forged))  # the forger computes a hash, too
    store.execute(
        "INSERT INTO events (tenant, unix_ms, event_id, action, action_label, outcome, document) "
        f"SELECT tenant, unix_ms, '{forged['event']['id']}', action, action_label, outcome, "
        f"'{dumps(forged).decode()}' FROM events WHERE seq = 9"
    )
    report = store.verify()
    (chain_report,) = report.chains
    inserted = [f for f in chain_report.findings if f.kind == "inserted"]
    assert [(f.first_seq, f.event_id) for f in inserted] == [(9, forged["event"]["id"])]
    assert original_id not in {f.event_id for f in chain_report.findings}
    assert chain_report.verified == 20


def test_swapped_records_are_reordered(tmp_path: Path):
    """Two records whose sequence numbers were swapped are both reported reordered, not modified."""
    store = chained_store(tmp_path)
    store.fill(30)
    store.execute(
        "UPDATE events SET document = json_set(document, '$.audit.chain.seq', 16) WHERE seq = 15",
        "UPDATE events SET document = json_set(document, '$.audit.chain.seq', 15) WHERE seq = 16",
    )
    report = store.verify()
    assert sorted(findings(report, "reordered")) == [(15, 15), (16, 16)]
    assert findings(report, "modified") == []


def test_dropping_the_newest_records_is_caught_by_the_anchor(tmp_path: Path):
    """Deleting the last records with their checkpoints leaves a shorter chain; only the anchor shows it."""
    store = chained_store(tmp_path)
    store.fill(50)
    store.execute("DELETE FROM events WHERE seq > 35", "DELETE FROM checkpoints WHERE last_seq > 30")
    with_anchor = store.verify()
    assert findings(with_anchor, "truncated") == [(36, 50)]
    assert any("no longer in the store" in problem for problem in with_anchor.checkpoint_problems)
    # without the anchor, what is left is a consistent (shorter) chain: the threat model's reason for it
    assert store.verify(anchored=False).intact


def test_a_recomputed_chain_fails_its_signed_checkpoint(tmp_path: Path):
    """A forger who rewrites one record and recomputes every later hash cannot sign: the range is named."""
    store = chained_store(tmp_path)
    store.fill(30)
    rows = list(documents(store))
    prev = orjson.loads(rows[13][1])["audit"]["chain"]["prev"]
    for row_id, text in rows[13:]:
        document = orjson.loads(text)
        if row_id == 14:
            document["user"]["email"] = "mallory@x.io"
        document["audit"]["chain"]["prev"] = prev
        document["audit"]["chain"]["hash"] = prev = link_hash(prev, content_digest(document))
        _replace(store, row_id, document)
    report = store.verify()
    assert not report.intact
    assert (11, 20) in findings(report, "rewritten")
    assert findings(report, "modified") == []  # each record is self-consistent: only the signature tells


def test_one_rehashed_record_is_named_modified(tmp_path: Path):
    """A record changed and given a fresh hash: the next record no longer follows it, so it is named."""
    store = chained_store(tmp_path)
    store.fill(30)
    document = _document(store, 22)
    document["audit"]["details"] = {"note": "harmless"}
    chain = document["audit"]["chain"]
    chain["hash"] = link_hash(chain["prev"], content_digest(document))
    _replace(store, 22, document)
    report = store.verify()
    assert findings(report, "modified") == [(22, 22)]


def test_a_tampered_checkpoint_is_refused(tmp_path: Path):
    """A stored checkpoint edited to cover fewer records fails its signature and is reported."""
    store = chained_store(tmp_path)
    store.fill(30)
    store.execute("UPDATE checkpoints SET body = json_set(body, '$.checkpoint.count', 3) WHERE last_seq = 20")
    report = store.verify(anchored=False)
    assert any("bad signature" in problem for problem in report.checkpoint_problems)
    assert not report.intact


def test_replays_leave_no_hole_in_the_chain(tmp_path: Path):
    """A batch of records already stored, mixed with new ones, links only the new ones."""
    store = chained_store(tmp_path)
    from tests.query.conftest import make_event  # noqa: PLC0415

    events = [make_event("create", ago_ms=index) for index in range(10)]
    with store.sink() as sink:
        assert sink.write(events[:6]) == 6
        assert sink.write([*events[3:], events[9]]) == 4
    report = store.verify()
    assert report.intact
    assert report.chains[0].last_seq == 10


def test_the_chain_continues_across_restarts(tmp_path: Path):
    """Each new sink on the file continues the chain where the last one ended."""
    store = chained_store(tmp_path)
    for _ in range(3):
        store.fill(12)
    report = store.verify()
    assert report.intact
    assert report.chains[0].last_seq == 36
    assert len(report.chains) == 1


def test_retention_removal_is_told_from_deletion(tmp_path: Path):
    """Records retention removed are accounted for; an old record deleted by hand is still missing."""
    store = chained_store(tmp_path)
    store.fill(20, start_ago_ms=10 * DAY)  # old: retention removes these
    store.fill(20)
    with store.sink(retention=SQLiteRetention(tiers={"standard": 5}, archive=False)) as sink:
        report = sink.housekeeping.apply_retention(sink.housekeeping.retention)  # type: ignore[arg-type]
    assert report.deleted == 20
    verified = store.verify()
    assert verified.intact
    assert verified.chains[0].removed_by_retention == 20
    assert verified.chains[0].verified == 20
    store.execute("DELETE FROM events WHERE seq = (SELECT min(seq) FROM events)")
    assert findings(store.verify(), "missing") == [(21, 21)]


def test_archive_and_restore_keep_the_chain(tmp_path: Path):
    """Archived by retention and restored again, records verify in their old places."""
    store = chained_store(tmp_path)
    store.fill(15, start_ago_ms=10 * DAY)
    store.fill(15)
    retention = SQLiteRetention(tiers={"standard": 5}, archive_dir=tmp_path / "archives")
    with store.sink(retention=retention) as sink:
        done = sink.housekeeping.apply_retention(retention)
    assert done.archived == 15
    with (
        closing(ConnectionPool(store.path, busy_timeout=5.0, synchronous="NORMAL")) as pool,
        pool.borrow() as conn,
    ):
        for path in done.files:
            assert restore_archive(conn, path).inserted == 15
    report = store.verify()
    assert report.intact
    assert report.chains[0].verified == 30


def test_records_from_before_chains_are_told_apart(tmp_path: Path):
    """A store upgraded from version 2 keeps its old records unchained, older than the chain: no tampering."""
    from audit_middleware.sqlite.migrations import STEPS, upgrade  # noqa: PLC0415
    from audit_middleware.sqlite.schema import INSERT, row_of  # noqa: PLC0415
    from tests.query.conftest import make_event  # noqa: PLC0415

    store = chained_store(tmp_path)
    with closing(sqlite3.connect(store.path, isolation_level=None)) as conn:
        upgrade(conn, store.path, STEPS[:2])
        conn.executemany(INSERT, [row_of(make_event("create", ago_ms=DAY + i)) for i in range(5)])
    store.fill(10)
    report = store.verify()
    assert report.intact
    assert report.unchained_old == 5
    assert report.chains[0].verified == 10


def test_checkpoint_signatures_unchecked_are_said(tmp_path: Path):
    """Without a key the report says the checkpoints were not checked."""
    from audit_middleware.query.verify import verify_chains  # noqa: PLC0415
    from audit_middleware.query.verify_sources import SQLiteSource  # noqa: PLC0415

    store = chained_store(tmp_path)
    store.fill(5)
    source = SQLiteSource(store.path)
    report = verify_chains(source.entries(), stored_checkpoints=source.checkpoints())
    assert report.intact
    assert not report.signatures_checked
    assert GENESIS == "0" * 64


def test_a_bulk_load_into_an_empty_store_is_chained_and_verifies(tmp_path: Path):
    """SQLiteSink.load() into an empty store links every stored row (a duplicate takes no place)."""
    store = chained_store(tmp_path)
    events = [make_event("create", ago_ms=n) for n in range(25)]
    with store.sink() as sink:
        assert sink.load([*events, events[3]]) == 25  # the repeated record is skipped
    report = store.verify()
    assert report.intact
    (chain,) = report.chains
    assert (chain.records, chain.verified, chain.first_seq, chain.last_seq) == (25, 25, 1, 25)


def test_a_bulk_load_into_a_store_with_records_extends_its_chain(tmp_path: Path):
    """A load into a store that has records continues the same chain, batch by batch."""
    store = chained_store(tmp_path)
    store.fill(12)
    with store.sink() as sink:
        assert sink.load(make_event("update", ago_ms=n) for n in range(30)) == 30
    report = store.verify()
    assert report.intact
    (chain,) = report.chains
    assert (chain.records, chain.last_seq) == (42, 42)


def test_one_tenants_export_with_chain_verifies_on_its_own_and_holds_no_other_tenant(tmp_path: Path):
    """export --with-chain of acme: acme's records, link lines for bigcorp's, the checkpoints; verifies."""
    from audit_middleware.model.event import Actor  # noqa: PLC0415
    from audit_middleware.query.model import AuditQuery  # noqa: PLC0415
    from audit_middleware.query.sqlite_store import SQLiteStore  # noqa: PLC0415

    store = chained_store(tmp_path)
    with store.sink() as sink:
        for index in range(25):
            tenant = "acme" if index % 3 else "bigcorp"
            sink.write(
                [make_event("create", tenant=tenant, ago_ms=25 - index, user=Actor(id=f"{tenant}-user"))]
            )
    reader = SQLiteStore(store.path)
    counted: list[int] = []
    path = tmp_path / "acme.ndjson"
    path.write_bytes(
        b"".join(reader.chained_export_chunks(AuditQuery.build("acme"), progress=counted.append))
    )
    reader.close()
    text = path.read_text()
    assert "bigcorp" not in text
    assert sum(counted) == 16
    report = store.verify_file(path)
    assert report.intact, report.as_json()
    assert report.chains[0].verified == 25
    path.write_text(text.replace("acme-user", "acme-admin", 1))
    assert findings(store.verify_file(path), "modified")


def _ism_chain(count: int, *, every: int = 10, start_ms: int = 0) -> tuple[list[Entry], list[Checkpoint]]:
    """A chain of ``count`` records in stream ``audit-standard``, one a minute from ``start_ms``,
    checkpointed every ``every`` records (each checkpoint made when its last record was linked)."""
    entries, checkpoints, prev = [], [], GENESIS
    for seq in range(1, count + 1):
        document = {"event": {"id": f"e{seq}"}, "audit": {}}
        link = with_link(document, "os-m-0-standard", seq, prev)
        prev = link.hash
        entries.append(entry_of(document, f"row {seq}", start_ms + seq * MINUTE))
        if seq % every == 0 or seq == count:
            first = checkpoints[-1].last_seq + 1 if checkpoints else 1
            checkpoints.append(
                Checkpoint(
                    "os-m-0-standard",
                    "periodic",
                    first,
                    seq,
                    link.hash,
                    seq - first + 1,
                    start_ms + seq * MINUTE,
                    index="audit-standard",
                )
            )
    return entries, checkpoints


MINUTE = 60_000
GONE = (".ds-audit-standard-000001",)


def _verify_ism(entries: list[Entry], checkpoints: list[Checkpoint], rules: StreamRetention) -> VerifyReport:
    return verify_chains(iter(entries), stored_checkpoints=checkpoints, retention={"audit-standard": rules})


def test_a_start_ism_deleted_is_retention_and_named():
    """The oldest backing index gone, its records older than the delete age: retention, by range."""
    entries, checkpoints = _ism_chain(40)
    rules = StreamRetention(
        horizon_ms=100 * MINUTE,
        delete_age="90d",
        oldest_index=".ds-audit-standard-000002",
        oldest_created_ms=20 * MINUTE,
        gone=GONE,
    )
    report = _verify_ism(entries[20:], checkpoints, rules)
    assert report.intact, report.as_json()
    (retention,) = [f for f in report.chains[0].findings if f.kind == "retention"]
    assert (retention.first_seq, retention.last_seq) == (1, 20)
    assert ".ds-audit-standard-000001" in retention.detail
    assert report.chains[0].removed_by_retention == 20


def test_records_written_after_the_oldest_index_left_are_missing():
    """Records linked after the oldest index still there was created were in it: not ISM's doing."""
    entries, checkpoints = _ism_chain(40)
    rules = StreamRetention(
        horizon_ms=100 * MINUTE,
        delete_age="90d",
        oldest_index=".ds-audit-standard-000002",
        oldest_created_ms=5 * MINUTE - CLOCK_SLACK_MS,
        gone=GONE,
    )
    report = _verify_ism(entries[25:], checkpoints, rules)
    assert findings(report, "retention") == [(1, 10)]  # linked before checkpoint 10 was made
    assert findings(report, "missing") == [(11, 25)]
    (missing,) = [f for f in report.chains[0].findings if f.kind == "missing"]
    assert "still there" in missing.detail


def test_a_start_younger_than_the_delete_age_is_missing():
    """Only the records checkpointed before the horizon can be retention; the younger ones are missing."""
    entries, checkpoints = _ism_chain(40)
    rules = StreamRetention(horizon_ms=15 * MINUTE, delete_age="90d", gone=GONE)
    report = _verify_ism(entries[30:], checkpoints, rules)
    assert findings(report, "retention") == [(1, 10)]
    assert findings(report, "missing") == [(11, 30)]
    assert not report.intact


def test_a_gone_index_missing_from_the_snapshots_is_missing():
    """Where the tier archives, a gone index that no snapshot holds was not removed by ISM."""
    entries, checkpoints = _ism_chain(40)
    rules = StreamRetention(
        horizon_ms=100 * MINUTE, delete_age="90d", gone=GONE, repository="archive", unarchived=GONE
    )
    report = _verify_ism(entries[20:], checkpoints, rules)
    assert findings(report, "retention") == []
    (missing,) = [f for f in report.chains[0].findings if f.kind == "missing"]
    assert (missing.first_seq, missing.last_seq) == (1, 20)
    assert "not in a snapshot of archive" in missing.detail


def test_a_start_gone_while_every_index_is_there_is_missing():
    """No backing index is gone: the start was deleted from an index that still exists."""
    entries, checkpoints = _ism_chain(40)
    report = _verify_ism(
        entries[20:], checkpoints, StreamRetention(horizon_ms=100 * MINUTE, delete_age="90d")
    )
    assert findings(report, "missing") == [(1, 20)]
    assert findings(report, "retention") == []
