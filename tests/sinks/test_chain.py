"""The store's chain on the write path: shared by processes, checkpointed on time, anchored outside."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from audit_middleware.errors import AuditValidationError
from audit_middleware.model.chain import GENESIS, set_link
from audit_middleware.model.encoding import dumps
from audit_middleware.sinks.chain import ChainPolicy, PendingRow, SQLiteChain, pending_row
from audit_middleware.sqlite.chains import read_head
from audit_middleware.sqlite.connection import ConnectionPool
from audit_middleware.sqlite.schema import row_of
from tests.chain_support import ChainedStore, chained_store, documents
from tests.conftest import ROOT
from tests.query.conftest import make_event

_WRITER = """
import sys
from pathlib import Path
from audit_middleware.model.checkpoints import Signer
from audit_middleware.sinks.anchor import FileAnchor
from audit_middleware.model.chain import GENESIS, set_link
from audit_middleware.model.encoding import dumps
from audit_middleware.sinks.chain import ChainPolicy, PendingRow, SQLiteChain, pending_row
from audit_middleware.sinks.sqlite import SQLiteSink
from tests.query.conftest import make_event

path, key, anchor = sys.argv[1:4]
policy = ChainPolicy(signer=Signer.from_file(key), every=7, anchor=FileAnchor(anchor))
with SQLiteSink(path, chain=policy, install_signal_handlers=False) as sink:
    for index in range(200):
        sink.emit(make_event("create", ago_ms=index))
"""


def test_processes_sharing_a_file_extend_one_chain(tmp_path: Path):
    """Three processes writing one file at once: one chain, no gap, no fork, every checkpoint sound."""
    store = chained_store(tmp_path, every=7)
    store.fill(1)  # creates the file, so the writers only upgrade nothing
    key = tmp_path / "key.pem"
    key.write_bytes(store.pem)  # the same key in each process
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(store.path), str(key), str(store.anchor)], cwd=ROOT
        )
        for _ in range(3)
    ]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0, 0]
    report = store.verify()
    assert report.intact, report.as_json()
    (chain,) = report.chains
    assert (chain.records, chain.verified, chain.last_seq) == (601, 601, 601)


def test_a_checkpoint_is_due_after_the_interval(tmp_path: Path):
    """With a long record count, a checkpoint still comes once the interval has passed since the last one."""
    store = chained_store(tmp_path, every=10_000)
    now = [time.time() + 120]
    policy = ChainPolicy(signer=store.signer, every=10_000, interval=60.0)
    with store.sink() as sink:
        sink.chain.policy = policy
        sink.chain.clock = lambda: now[0]
        sink.write([make_event("create", ago_ms=3)])  # first write: the interval since creation passed
        sink.write([make_event("create", ago_ms=2)])  # 0 s later: not due
        now[0] += 61
        sink.write([make_event("create", ago_ms=1)])  # due by time
        with ConnectionPool(sink.path, busy_timeout=5, synchronous="NORMAL").borrow() as conn:
            assert read_head(conn).checkpoint_seq == 3
            kinds = conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
        assert kinds == 2


def test_an_idle_writer_checkpoints_once_the_interval_has_passed(tmp_path: Path):
    """Records that are followed by no other write are still checkpointed (and anchored) by the
    idle writer once the interval has passed, long before the store closes."""
    store = chained_store(tmp_path, every=10_000)
    now = [time.time()]
    with store.sink() as sink:
        sink.chain.policy = ChainPolicy(
            signer=store.signer, every=10_000, interval=60.0, anchor=store.policy().anchor
        )
        sink.chain.clock = lambda: now[0]
        for index in range(3):
            sink.emit(make_event("create", ago_ms=index))
        sink.flush()

        def checkpointed_seq() -> int:
            with ConnectionPool(sink.path, busy_timeout=5, synchronous="NORMAL").borrow() as conn:
                return read_head(conn).checkpoint_seq

        first = checkpointed_seq()  # the first write may checkpoint (the interval since creation)
        sink.emit(make_event("create", ago_ms=10))
        sink.flush()
        time.sleep(1.2)  # idle rounds: not due yet
        assert checkpointed_seq() == first
        now[0] += 61
        deadline = time.monotonic() + 10
        while checkpointed_seq() != 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checkpointed_seq() == 4
        anchored = [line for line in store.anchor.read_text().splitlines() if line.strip()]
        assert orjson.loads(anchored[-1])["checkpoint"]["last_seq"] == 4


def test_an_unwritable_anchor_is_retried(tmp_path: Path):
    """When the anchor cannot be written, its checkpoints are kept and appended with the next ones."""
    store = chained_store(tmp_path, every=5)
    blocker = store.anchor.parent
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the anchor's folder should be")
    with store.sink() as sink:
        sink.write([make_event("create", ago_ms=index) for index in range(5)])
        anchor = sink.chain.policy.anchor
        assert anchor is not None
        assert anchor.failures == 1
        blocker.unlink()
        sink.write([make_event("create", ago_ms=index + 10) for index in range(5)])
    assert len(store.anchor.read_text().splitlines()) == 2
    assert store.verify().intact


def test_documents_carry_their_link(tmp_path: Path):
    """Each stored document holds audit.chain with its chain id, seq, prev and hash."""
    store = chained_store(tmp_path)
    store.fill(3)
    links = [orjson.loads(text)["audit"]["chain"] for _, text in documents(store)]
    assert [link["seq"] for link in links] == [1, 2, 3]
    assert links[1]["prev"] == links[0]["hash"]
    assert len({link["id"] for link in links}) == 1


def test_bad_policies_are_refused(monkeypatch: pytest.MonkeyPatch):
    """A checkpoint frequency below 1, or unreadable from the environment, is a clear error."""
    with pytest.raises(ValueError, match="every"):
        ChainPolicy(every=0)
    monkeypatch.setenv("AUDIT_CHAIN_CHECKPOINT_EVERY", "often")
    with pytest.raises(AuditValidationError, match="frequency"):
        ChainPolicy.from_environment()


def test_the_writer_rows_and_parsed_rows_link_alike(tmp_path: Path):
    """The writer's pending rows (digest computed before the transaction) and rows whose text is
    parsed inside it (a load into a filled store) give the same links, odd values included."""
    odd = {"price": Decimal("1.50"), "ratio": 0.25, "none": None}
    events = [make_event("create", ago_ms=index, details={**odd, "n": index}) for index in range(5)]
    (tmp_path / "pending").mkdir()
    (tmp_path / "parsed").mkdir()
    pending_store = chained_store(tmp_path / "pending")
    with pending_store.sink() as sink:
        sink.write(events)
    parsed_store = chained_store(tmp_path / "parsed")
    with parsed_store.sink():
        pass  # creates the file at the current version
    chain = SQLiteChain(parsed_store.policy())
    with closing(sqlite3.connect(parsed_store.path, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        chain.insert(conn, [row_of(event) for event in events])
        conn.execute("COMMIT")

    def links(store: ChainedStore) -> list[tuple[int, str, str]]:
        chained = [orjson.loads(text)["audit"]["chain"] for _, text in documents(store)]
        return [(link["seq"], link["prev"], link["hash"]) for link in chained]

    assert links(pending_store) == links(parsed_store)
    assert len(links(pending_store)) == 5
    assert pending_store.verify().intact


def test_the_writer_stores_the_text_of_each_linked_document(tmp_path: Path):
    """The writer splices each link into text encoded before the transaction: what it stores is
    exactly what encoding the linked document gives, for rows it cannot splice as well."""
    odd = {"price": Decimal("1.50"), "name": "Zoë \u2028 \U0001f600"}
    events = [make_event("create", ago_ms=index, details={**odd, "n": index}) for index in range(6)]
    rows = [pending_row(event) for event in events]
    assert all(row.unlinked is not None for row in rows)
    unlinked = [orjson.loads(dumps(row.document)) for row in rows]
    whole = PendingRow(rows[3].columns, rows[3].document, rows[3].digest)  # linked, then encoded whole
    store = chained_store(tmp_path)
    with store.sink():
        pass  # creates the file at the current version
    chain = SQLiteChain(store.policy())
    with closing(sqlite3.connect(store.path, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        chain.insert(conn, [*rows[:3], whole, *rows[4:]])
        conn.execute("COMMIT")
        chain_id = read_head(conn).chain
    expected, prev = [], GENESIS
    for seq, (row, document) in enumerate(zip(rows, unlinked, strict=True), 1):
        prev = set_link(document, chain_id, seq, prev, row.digest).hash
        expected.append(dumps(document).decode("utf-8"))
    assert [text for _, text in documents(store)] == expected
    assert store.verify().intact
