"""Chained SQLite stores for the tamper-evidence tests: a key, a store with its anchor, a verify run."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from audit_middleware.model.checkpoints import KeyRing, Signer, generate_key_pem
from audit_middleware.query.verify import VerifyReport, verify_chains
from audit_middleware.query.verify_sources import FileSource, SQLiteSource, read_anchor
from audit_middleware.sinks.anchor import FileAnchor
from audit_middleware.sinks.chain import ChainPolicy
from audit_middleware.sinks.sqlite import SQLiteSink
from tests.query.conftest import make_event


@dataclass
class ChainedStore:
    """A SQLite file whose chain is checkpointed every ``every`` records, with its key and anchor."""

    path: Path
    anchor: Path
    signer: Signer
    pem: bytes
    every: int = 10

    def policy(self) -> ChainPolicy:
        return ChainPolicy(signer=self.signer, every=self.every, anchor=FileAnchor(self.anchor))

    def sink(self, **options: object) -> SQLiteSink:
        return SQLiteSink(self.path, chain=self.policy(), install_signal_handlers=False, **options)  # type: ignore[arg-type]

    def fill(
        self, count: int, *, batch: int | None = None, tenant: str = "acme", start_ago_ms: int = 0
    ) -> None:
        """Write ``count`` records, ``batch`` per transaction (default: one checkpoint interval)."""
        size = batch or self.every
        with self.sink() as sink:
            for first in range(0, count, size):
                sink.write(
                    [
                        make_event("create", tenant=tenant, ago_ms=start_ago_ms + count - index)
                        for index in range(first, min(first + size, count))
                    ]
                )

    def execute(self, *statements: str) -> None:
        """Run SQL on the file directly, as someone holding it would."""
        with closing(sqlite3.connect(self.path)) as conn:
            for statement in statements:
                conn.execute(statement)
            conn.commit()

    def keys(self) -> KeyRing:
        return KeyRing.from_pem([self.signer.public_pem()])

    def verify(self, *, anchored: bool = True) -> VerifyReport:
        source = SQLiteSource(self.path)
        return verify_chains(
            source.entries(),
            stored_checkpoints=source.checkpoints(),
            anchored_checkpoints=list(read_anchor(self.anchor)) if anchored and self.anchor.exists() else [],
            keys=self.keys(),
        )

    def verify_file(self, path: Path) -> VerifyReport:
        source = FileSource(path)
        entries = list(source.entries())
        return verify_chains(
            iter(entries),
            stored_checkpoints=source.checkpoints(),
            anchored_checkpoints=list(read_anchor(self.anchor)) if self.anchor.exists() else [],
            keys=self.keys(),
        )


def chained_store(tmp_path: Path, *, every: int = 10) -> ChainedStore:
    """An empty chained store below ``tmp_path`` (its anchor beside it, as if on another mount)."""
    pem = generate_key_pem()
    return ChainedStore(
        tmp_path / "audit.sqlite3",
        tmp_path / "anchor" / "checkpoints.jsonl",
        Signer.from_pem(pem),
        pem,
        every,
    )


def findings(report: VerifyReport, kind: str) -> list[tuple[int, int]]:
    """The (first, last) sequence numbers of every finding of ``kind``, in all chains."""
    return [(f.first_seq, f.last_seq) for chain in report.chains for f in chain.findings if f.kind == kind]


def documents(store: ChainedStore) -> Iterator[tuple[int, str]]:
    """(row id, document) of every row, in insertion order."""
    with closing(sqlite3.connect(store.path)) as conn:
        yield from conn.execute("SELECT seq, document FROM events ORDER BY seq")
