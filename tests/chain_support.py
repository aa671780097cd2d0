"""Chained SQLite stores for the tamper-evidence tests: a key, a store with its anchor, a verify run."""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import time
import warnings
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit_middleware.model.checkpoints import KeyRing, Signer, generate_key_pem
from audit_middleware.opensearch.chains import checkpoints_stream
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.opensearch.provisioning import SetupConfig, apply
from audit_middleware.opensearch.retention import RetentionTier
from audit_middleware.query.verify import VerifyReport, verify_chains
from audit_middleware.query.verify_sources import FileSource, OpenSearchSource, SQLiteSource, read_anchor
from audit_middleware.sinks.anchor import FileAnchor
from audit_middleware.sinks.chain import ChainPolicy
from audit_middleware.sinks.opensearch.shipper import ShipperOptions
from audit_middleware.sinks.opensearch.sink import OpenSearchSink
from audit_middleware.sinks.sqlite import SQLiteSink
from tests.conftest import OPENSEARCH_URL
from tests.integration.layout import remove_layout
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


FAST = ShipperOptions(flush_interval=0.1, backoff_base=0.05, backoff_max=0.5, request_timeout=5.0)


class Trail:
    """A set-up prefix on the node, a key and an anchor, and records shipped by a real shipper."""

    def __init__(self, client: Any, prefix: str, tmp_path: Path) -> None:
        self.client, self.prefix, self.tmp_path = client, prefix, tmp_path
        self.signer = Signer.from_pem(generate_key_pem())
        self.anchor = tmp_path / "anchor.jsonl"

    @property
    def stream(self) -> str:
        return f"{self.prefix}-standard"

    def ship(self, count: int, *, state: str = "state") -> list[str]:
        """Ship ``count`` records with one sink, flush and close it (the chain's end is checkpointed)."""
        sink = OpenSearchSink(
            settings=ConnectionSettings(urls=(OPENSEARCH_URL,), prefix=self.prefix, timeout=5.0),
            state_dir=self.tmp_path / state,
            options=FAST,
            install_signal_handlers=False,
            chain=ChainPolicy(signer=self.signer, every=10, anchor=FileAnchor(self.anchor)),
        )
        events = [make_event("create", ago_ms=count - index) for index in range(count)]
        for event in events:
            sink.emit(event)
        assert sink.flush(30)
        sink.close(10)
        self.refresh()
        return [event.id for event in events]

    def refresh(self) -> None:
        self.client.indices.refresh(
            index=f"{self.prefix}-*,{checkpoints_stream(self.prefix)}", params={"ignore_unavailable": "true"}
        )

    def hits(self) -> list[dict[str, Any]]:
        """The stored records in chain order (with their backing index)."""
        body = {
            "size": 1000,
            "sort": [{"audit.chain.seq": "asc"}],
            "query": {"exists": {"field": "audit.chain.id"}},
        }
        return self.client.search(index=f"{self.prefix}-*", body=body)["hits"]["hits"]

    def backing(self) -> list[str]:
        """The stream's backing indices, oldest first."""
        streams = self.client.indices.get_data_stream(name=self.stream)["data_streams"]
        return sorted(index["index_name"] for index in streams[0]["indices"])

    def update(self, hit: dict[str, Any], document: dict[str, Any]) -> None:
        """Overwrite a stored record in its backing index, as someone with write access to it can."""
        self.client.index(
            index=hit["_index"],
            id=hit["_id"],
            body=document,
            params={"if_seq_no": hit["_seq_no"], "if_primary_term": hit["_primary_term"], "refresh": "true"},
        )

    def verify(self, *, anchored: bool = True, now_ms: int | None = None) -> VerifyReport:
        source = OpenSearchSource(self.client, self.prefix)
        return verify_chains(
            source.entries(),
            stored_checkpoints=source.checkpoints(),
            anchored_checkpoints=list(read_anchor(self.anchor)) if anchored and self.anchor.exists() else [],
            keys=KeyRing.from_pem([self.signer.public_pem()]),
            retention=source.retention(now_ms or int(time.time() * 1000)),
        )


@contextlib.contextmanager
def opensearch_trail(
    client: Any,
    prefix: str,
    tmp_path: Path,
    *,
    tiers: tuple[RetentionTier, ...] | None = None,
    snapshot_location: str | None = None,
) -> Iterator[Trail]:
    """A freshly set-up prefix (its ISM policies from ``tiers``, default ones otherwise), removed after."""
    config = SetupConfig(prefix=prefix, replicas=0, require_ism=False, alert_rules=())
    if tiers is not None:
        config = dataclasses.replace(config, tiers=tiers, snapshot_location=snapshot_location)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        apply(client, config)
    try:
        yield Trail(client, prefix, tmp_path)
    finally:
        remove_layout(client, prefix)
