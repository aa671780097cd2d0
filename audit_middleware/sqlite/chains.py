"""The SQLite layout of the hash chain: the store's chain head, its checkpoints, the chain columns.

Version 4 (``CHAINS_V4``):

* ``events.chain_id`` and ``events.chain_seq``: generated (virtual) columns read from
  the document's ``audit.chain``, indexed together, so ``verify`` reads a chain in order
  and archives, restores and imports, which copy documents, keep their links with no
  column to fill in. Records written before version 4 have none (NULL).
* ``chains``: one row per chain this store extends (one: the store's own), with its
  head (the last sequence number and hash) and the last checkpointed sequence number.
  The writer reads and moves the head inside its write transaction, so processes
  sharing the file extend one chain in turn.
* ``checkpoints``: every checkpoint (``model.checkpoints``), as its signed JSON, so a
  copy of the file carries them.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from audit_middleware.model.chain import GENESIS
from audit_middleware.model.checkpoints import Checkpoint, checkpoint_from_json
from audit_middleware.model.encoding import dumps, loads

__all__ = [
    "CHAINS_V4",
    "ChainHead",
    "add_checkpoint",
    "create_store_chain",
    "iter_checkpoints",
    "read_head",
    "store_chain_id",
    "write_head",
]

CHAINS_V4: Final[tuple[str, ...]] = (
    "ALTER TABLE events ADD COLUMN chain_id TEXT "
    "GENERATED ALWAYS AS (json_extract(document, '$.audit.chain.id')) VIRTUAL",
    "ALTER TABLE events ADD COLUMN chain_seq INTEGER "
    "GENERATED ALWAYS AS (json_extract(document, '$.audit.chain.seq')) VIRTUAL",
    "CREATE INDEX events_by_chain ON events (chain_id, chain_seq)",
    """
    CREATE TABLE chains (
        id TEXT PRIMARY KEY,
        head_seq INTEGER NOT NULL,
        head_hash TEXT NOT NULL,
        checkpoint_seq INTEGER NOT NULL,
        checkpoint_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE checkpoints (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        chain TEXT NOT NULL,
        kind TEXT NOT NULL,
        last_seq INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        body TEXT NOT NULL
    )
    """,
    "CREATE INDEX checkpoints_by_chain ON checkpoints (chain, last_seq)",
)


def create_store_chain(conn: sqlite3.Connection) -> None:
    """The migration's data step: name the store's chain (random: two stores never share one)."""
    now = int(time.time() * 1000)
    conn.execute(
        "INSERT INTO chains (id, head_seq, head_hash, checkpoint_seq, checkpoint_ms, created_ms) "
        "VALUES (?, 0, ?, 0, ?, ?)",
        (f"sqlite-{secrets.token_hex(8)}", GENESIS, now, now),
    )


@dataclass(slots=True)
class ChainHead:
    """Where the store's chain ends, and how far it is checkpointed."""

    chain: str
    seq: int
    hash: str
    checkpoint_seq: int
    checkpoint_ms: int
    created_ms: int


def store_chain_id(conn: sqlite3.Connection) -> str | None:
    """The id of the chain this store extends (None in a file without one)."""
    row = conn.execute("SELECT id FROM chains ORDER BY created_ms LIMIT 1").fetchone()
    return None if row is None else str(row[0])


def read_head(conn: sqlite3.Connection) -> ChainHead:
    """The store's chain head; call inside the write transaction."""
    row = conn.execute(
        "SELECT id, head_seq, head_hash, checkpoint_seq, checkpoint_ms, created_ms "
        "FROM chains ORDER BY created_ms LIMIT 1"
    ).fetchone()
    if row is None:  # a file whose chains row was deleted: start a new chain rather than fail writes
        create_store_chain(conn)
        return read_head(conn)
    return ChainHead(str(row[0]), int(row[1]), str(row[2]), int(row[3]), int(row[4]), int(row[5]))


def write_head(conn: sqlite3.Connection, head: ChainHead) -> None:
    """Move the head (inside the write transaction that added its records)."""
    conn.execute(
        "UPDATE chains SET head_seq = ?, head_hash = ?, checkpoint_seq = ?, checkpoint_ms = ? WHERE id = ?",
        (head.seq, head.hash, head.checkpoint_seq, head.checkpoint_ms, head.chain),
    )


def add_checkpoint(conn: sqlite3.Connection, checkpoint: Checkpoint) -> None:
    """Store ``checkpoint`` beside the records."""
    conn.execute(
        "INSERT INTO checkpoints (chain, kind, last_seq, created_ms, body) VALUES (?, ?, ?, ?, ?)",
        (
            checkpoint.chain,
            checkpoint.kind,
            checkpoint.last_seq,
            checkpoint.created_ms,
            dumps(checkpoint.to_json()).decode("utf-8"),
        ),
    )


def iter_checkpoints(conn: sqlite3.Connection) -> Iterator[Checkpoint | str]:
    """Every stored checkpoint, by chain and sequence; a malformed one is its error message."""
    cursor = conn.execute("SELECT id, body FROM checkpoints ORDER BY chain, last_seq, id")
    for row_id, body in cursor:
        try:
            yield checkpoint_from_json(loads(body))
        except Exception as exc:  # noqa: BLE001, PERF203 - a damaged row is reported, not fatal
            yield f"checkpoint row {row_id}: {exc}"
