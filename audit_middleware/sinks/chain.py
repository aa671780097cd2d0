"""Extending a store's hash chain on the write path, and its checkpoints.

``ChainPolicy`` is what the application configures: the signing key, how often a
checkpoint is written (every ``every`` records or ``interval`` seconds), and the
external anchor. ``SQLiteChain`` applies it inside the SQLite writer's transaction
(``sinks.sqlite``): it reads the head from the store (so a restarted process, or
another process sharing the file, continues where the last write ended), links each
row's redacted document (``model.chain``), moves the head, and adds a checkpoint when
one is due. Checkpoints go to the anchor after the transaction commits.

Everything here runs on the writer thread (or the caller of a synchronous write),
never on a request thread that queued its record.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from audit_middleware import env
from audit_middleware.errors import AuditValidationError
from audit_middleware.model.chain import (
    link_of,
    linked_text,
    next_link,
    prepared_for_link,
    set_link,
    unlinked_text,
    with_link,
)
from audit_middleware.model.checkpoints import Checkpoint, Signer
from audit_middleware.model.encoding import dumps, loads
from audit_middleware.model.event import AuditEvent
from audit_middleware.sinks.anchor import Anchor, FileAnchor
from audit_middleware.sqlite.chains import ChainHead, add_checkpoint, read_head, write_head
from audit_middleware.sqlite.schema import insert_rows, row_of_document

__all__ = ["ChainEnd", "ChainPolicy", "PendingRow", "SQLiteChain", "pending_row", "row_key"]

_DOCUMENT = 14  # the document's place in an events row (sqlite.schema.row_of)
_TENANT, _EVENT_ID = 0, 2


class PendingRow(NamedTuple):
    """An event's ``events`` row before it is linked: the writer builds it outside the
    transaction, with the part of the link that does not depend on the chain's head.

    ``columns`` is the row without its document text, ``document`` the document as it
    will be stored, ``digest`` its content digest (``model.chain.prepared_for_link``),
    ``unlinked`` its stored text cut where the link goes (``model.chain.unlinked_text``),
    so the transaction splices the link in rather than encode the document again; None
    when it cannot be cut (the document is then linked and encoded in the transaction).
    """

    columns: tuple[Any, ...]
    document: dict[str, Any]
    digest: bytes
    unlinked: str | None = None


def pending_row(event: AuditEvent) -> PendingRow:
    """``event``'s row, ready to be linked (raises as ``schema.row_of`` does for a bad event)."""
    document, digest = prepared_for_link(event.to_document())
    columns = row_of_document(document, "", event.unix_ms)[:_DOCUMENT]
    return PendingRow(columns, document, digest, unlinked_text(document))


Row = tuple[Any, ...] | PendingRow
"""What ``SQLiteChain.insert`` takes: a pending row, or a ``schema.row_of`` row (its text is parsed)."""


class ChainEnd(Protocol):
    """Where a chain ends and how far it is checkpointed (each store's head has these)."""

    chain: str
    seq: int
    hash: str
    checkpoint_seq: int
    checkpoint_ms: int


@dataclass(frozen=True)
class ChainPolicy:
    """How a store's chain is checkpointed: signing key, frequency, external anchor.

    ``signer`` signs checkpoints (``Signer.from_file(path)``); without it checkpoints
    are written unsigned, which proves only that the store agrees with itself (see
    "Tamper evidence" in docs/architecture.md). ``anchor`` is where checkpoints are
    copied outside the store (a ``FileAnchor``, or an object with ``publish``).
    """

    signer: Signer | None = None
    every: int = 1000
    interval: float = 60.0
    anchor: Anchor | None = None

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError("checkpoints need every >= 1 record")
        if self.interval <= 0:
            raise ValueError("the checkpoint interval must be positive")

    @classmethod
    def from_paths(
        cls,
        *,
        signing_key: str | os.PathLike[str] | None = None,
        anchor: str | os.PathLike[str] | None = None,
        every: int = 1000,
        interval: float = 60.0,
    ) -> ChainPolicy:
        """A policy from a PEM key file and an anchor file path (either may be None)."""
        return cls(
            signer=None if signing_key is None else Signer.from_file(signing_key),
            every=every,
            interval=interval,
            anchor=None if anchor is None else FileAnchor(anchor),
        )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ChainPolicy:
        """The policy the ``AUDIT_CHAIN_*`` variables describe (defaults where unset)."""
        try:
            every = int(env.value(env.CHAIN_CHECKPOINT_EVERY, environ) or 1000)
            interval = float(env.value(env.CHAIN_CHECKPOINT_SECONDS, environ) or 60.0)
        except ValueError as exc:
            raise AuditValidationError(f"bad checkpoint frequency in the environment: {exc}") from exc
        return cls.from_paths(
            signing_key=env.value(env.CHAIN_SIGNING_KEY, environ),
            anchor=env.value(env.CHAIN_ANCHOR, environ),
            every=every,
            interval=interval,
        )

    def record_removal(self, conn: sqlite3.Connection, documents: Sequence[str]) -> None:
        """Retention deletes ``documents`` in this transaction: store a retention checkpoint per chain.

        It names the deleted runs of sequence numbers and the hash each run ends with, so
        ``verify`` accounts for them and links across the gap.
        """
        seqs: dict[str, dict[int, str]] = {}
        for text in documents:
            link = link_of(loads(text))
            if link is not None:
                seqs.setdefault(link.chain, {})[link.seq] = link.hash
        now_ms = int(time.time() * 1000)
        for chain, hashes in seqs.items():
            runs: list[tuple[int, int, str]] = []
            for seq in sorted(hashes):
                if runs and runs[-1][1] == seq - 1:
                    runs[-1] = (runs[-1][0], seq, hashes[seq])
                else:
                    runs.append((seq, seq, hashes[seq]))
            last = max(hashes)
            add_checkpoint(
                conn,
                self.seal(
                    Checkpoint(
                        chain=chain,
                        kind="retention",
                        first_seq=min(hashes),
                        last_seq=last,
                        last_hash=hashes[last],
                        count=len(hashes),
                        created_ms=now_ms,
                        removed=tuple(runs),
                    )
                ),
            )

    def due(
        self, head: ChainEnd, *, now_ms: int, force: bool = False, index: str | None = None
    ) -> Checkpoint | None:
        """The signed checkpoint of the chain since its last one, if one is due (or forced), else None."""
        pending = head.seq - head.checkpoint_seq
        due = pending >= self.every or now_ms - head.checkpoint_ms >= self.interval * 1000
        if pending <= 0 or not (due or force):
            return None
        return self.seal(
            Checkpoint(
                chain=head.chain,
                kind="periodic",
                first_seq=head.checkpoint_seq + 1,
                last_seq=head.seq,
                last_hash=head.hash,
                count=pending,
                created_ms=now_ms,
                index=index,
            )
        )

    def seal(self, checkpoint: Checkpoint) -> Checkpoint:
        """``checkpoint`` signed when a key is configured."""
        return checkpoint if self.signer is None else self.signer.sign(checkpoint)


@dataclass
class SQLiteChain:
    """The store's chain, extended by one writer process (see the module docstring)."""

    policy: ChainPolicy = field(default_factory=ChainPolicy)
    clock: Callable[[], float] = time.time
    _unpublished: list[Checkpoint] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # (seq, checkpoint seq, checkpoint ms) of the head this process last wrote
    _last_written: tuple[int, int, int] | None = None

    def insert(
        self,
        conn: sqlite3.Connection,
        rows: Sequence[Row],
        store: Callable[[sqlite3.Connection, Sequence[tuple[Any, ...]]], int] = insert_rows,
    ) -> int:
        """Link ``rows`` and insert them; call inside the write transaction. Returns rows added.

        ``store`` inserts the linked rows (``schema.insert_only`` for a bulk load whose
        search index is built after it). A row already stored (same tenant and event id: a
        replay) gets no link, so the chain never has a hole where a duplicate was ignored.
        """
        conn.execute("SAVEPOINT audit_chain")
        head = read_head(conn)
        inserted = store(conn, self._link(head, rows))
        if inserted != len(rows):  # duplicates: link only the new rows
            conn.execute("ROLLBACK TO audit_chain")
            head = read_head(conn)
            fresh = _new_rows(conn, rows)
            inserted = store(conn, self._link(head, fresh)) if fresh else 0
        self._checkpoint_if_due(conn, head, force=False)
        write_head(conn, head)
        conn.execute("RELEASE audit_chain")
        self._last_written = (head.seq, head.checkpoint_seq, head.checkpoint_ms)
        return max(inserted, 0)

    def checkpoint(self, conn: sqlite3.Connection, *, force: bool = True) -> None:
        """Checkpoint whatever is not yet (``force``: the writer is closing), or only what is
        due by the policy; call inside a transaction."""
        head = read_head(conn)
        if self._checkpoint_if_due(conn, head, force=force):
            write_head(conn, head)
        self._last_written = (head.seq, head.checkpoint_seq, head.checkpoint_ms)

    def idle_checkpoint_due(self) -> bool:
        """Whether records this process wrote have waited ``interval`` for a checkpoint.

        Without it, a store that goes quiet keeps its newest records unsigned until the next
        write or the close: the window in which dropping them cannot be detected. Read from
        memory, so an idle writer can ask every round.
        """
        if self._last_written is None:
            return False
        seq, checkpoint_seq, checkpoint_ms = self._last_written
        return seq > checkpoint_seq and self.clock() * 1000 - checkpoint_ms >= self.policy.interval * 1000

    def committed(self) -> None:
        """The transaction committed: copy its checkpoints to the anchor."""
        with self._lock:
            ready, self._unpublished = self._unpublished, []
        if ready and self.policy.anchor is not None:
            self.policy.anchor.publish(ready)

    def rolled_back(self) -> None:
        """The transaction failed: its checkpoints do not exist."""
        with self._lock:
            self._unpublished.clear()

    def _link(self, head: ChainHead, rows: Sequence[Row]) -> list[tuple[Any, ...]]:
        linked: list[tuple[Any, ...]] = []
        for row in rows:
            seq, prev = head.seq + 1, head.hash
            if isinstance(row, PendingRow) and row.unlinked is not None:  # the writer's rows
                link = next_link(head.chain, seq, prev, row.digest)
                columns, text = row.columns, linked_text(row.unlinked, link)
            else:
                if isinstance(row, PendingRow):
                    columns, document = row.columns, row.document
                    link = set_link(document, head.chain, seq, prev, row.digest)
                else:
                    columns, document = row[:_DOCUMENT], loads(row[_DOCUMENT])
                    link = with_link(document, head.chain, seq, prev)
                text = dumps(document).decode("utf-8")
            head.seq, head.hash = link.seq, link.hash
            linked.append((*columns, text))
        return linked

    def _checkpoint_if_due(self, conn: sqlite3.Connection, head: ChainHead, *, force: bool) -> bool:
        now_ms = int(self.clock() * 1000)
        checkpoint = self.policy.due(head, now_ms=now_ms, force=force)
        if checkpoint is None:
            return False
        add_checkpoint(conn, checkpoint)
        head.checkpoint_seq, head.checkpoint_ms = head.seq, now_ms
        with self._lock:
            self._unpublished.append(checkpoint)
        return True


def row_key(row: Row) -> tuple[str, str]:
    """The (tenant, event id) of a row, pending or built."""
    columns = row.columns if isinstance(row, PendingRow) else row
    return columns[_TENANT], columns[_EVENT_ID]


def _new_rows(conn: sqlite3.Connection, rows: Sequence[Row]) -> list[Row]:
    """The rows not stored yet, each once (the first of duplicates within the batch)."""
    seen: set[tuple[str, str]] = set()
    fresh: list[Row] = []
    for row in rows:
        key = row_key(row)
        if key in seen:
            continue
        seen.add(key)
        stored = conn.execute("SELECT 1 FROM events WHERE tenant = ? AND event_id = ?", key).fetchone()
        if stored is None:
            fresh.append(row)
    return fresh
