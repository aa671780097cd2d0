"""Retention on the embedded store: per-tier age limits, archived to compressed NDJSON first.

Each tenant belongs to a tier (``standard`` keeps 90 days by default; extended tiers
are configured per tenant, by a map or a callback). ``apply_retention`` finds, tenant by
tenant, the records older than their tier allows, and for each chunk of them:

1. appends their stored documents, one JSON object per line, to the run's gzip file
   (``<archive dir>/<tier>/audit-<tier>-<UTC time>-<run>.ndjson.gz``), flushes and
   fsyncs it;
2. then, in one transaction, deletes those rows and adds them to the file's entry in
   the ``archives`` table.

A crash between the two steps leaves records both archived and stored; the next run
archives them again and ``restore_archive`` skips what a store holds already, so
nothing is lost and nothing is restored twice. A run that stopped early leaves a
readable file without its gzip trailer; restoring it reads up to the damage and says so.

The tier of a tenant is looked up when retention runs: a tenant moved to another tier
has its whole history kept for the new tier's time from then on (there are no separate
streams to move between, as there are on OpenSearch).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import secrets
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any, Final

from audit_middleware.errors import AuditValidationError
from audit_middleware.model.encoding import loads
from audit_middleware.model.event import AuditEvent
from audit_middleware.model.tenancy import HASHED_PREFIX, NO_TENANT_KEY
from audit_middleware.sqlite.maintenance import transaction
from audit_middleware.sqlite.schema import insert_rows, row_of

__all__ = [
    "ArchiveFile",
    "RestoreReport",
    "RetentionReport",
    "SQLiteRetention",
    "apply_retention",
    "archive_dir_for",
    "list_archives",
    "read_archive",
    "restore_archive",
]

STANDARD_DAYS: Final = 90
EXTENDED_DAYS: Final = 365
CHUNK: Final = 5000  # rows per transaction, so writers wait at most one chunk
FILE_RECORDS: Final = 100_000  # a run starts a new archive file after this many records
_DAY_MS: Final = 86_400_000

TierOf = Callable[[str | None], str | None]
"""A tenant id (``None``: records without a tenant) to its tier, or ``None`` for the default tier."""


@dataclass(frozen=True)
class SQLiteRetention:
    """How long each tier keeps records, which tenants are in which tier, and where archives go.

    ``tiers`` maps a tier to days (a number, or a ``timedelta`` for tests that watch
    retention act in seconds). Give ``tenant_tiers`` or ``tier_of`` (or neither: every
    tenant gets ``default_tier``). ``archive_dir`` defaults to ``<database>.archive``
    beside the file; ``archive=False`` deletes without archiving. ``interval`` is how
    often (seconds) a writer runs it automatically.

    >>> SQLiteRetention(tenant_tiers={"acme": "extended"}).retention_ms("extended") // 86_400_000
    365
    """

    tiers: Mapping[str, float | timedelta] = field(
        default_factory=lambda: {"standard": STANDARD_DAYS, "extended": EXTENDED_DAYS}
    )
    tenant_tiers: Mapping[str, str] = field(default_factory=dict)
    tier_of: TierOf | None = None
    default_tier: str = "standard"
    archive_dir: str | os.PathLike[str] | None = None
    archive: bool = True
    interval: float = 3600.0

    def __post_init__(self) -> None:
        if not self.tiers:
            raise AuditValidationError("retention needs at least one tier")
        for tier in self.tiers:
            if self.retention_ms(tier) <= 0:
                raise AuditValidationError(f"tier {tier!r} must keep records for a positive time")
        if self.tenant_tiers and self.tier_of is not None:
            raise AuditValidationError("give either tenant_tiers or tier_of, not both")
        for what, tier in [("default_tier", self.default_tier), *self.tenant_tiers.items()]:
            if tier not in self.tiers:
                raise AuditValidationError(
                    f"{what} is in tier {tier!r}, which is not one of {sorted(self.tiers)}"
                )
        if self.interval <= 0:
            raise AuditValidationError("interval must be a positive number of seconds")

    def retention_ms(self, tier: str) -> int:
        """How long ``tier`` keeps a record, in milliseconds."""
        keep = self.tiers[tier]
        if isinstance(keep, timedelta):
            return int(keep.total_seconds() * 1000)
        if isinstance(keep, bool) or not isinstance(keep, int | float):
            raise AuditValidationError(f"tier {tier!r}: days must be a number, not {keep!r}")
        return int(keep * _DAY_MS)

    def tier_for(self, tenant: str | None) -> str:
        """The tier of a tenant id (``None`` for records without one)."""
        if self.tier_of is not None:
            chosen = self.tier_of(tenant)
            if chosen is None:
                return self.default_tier
            if chosen not in self.tiers:
                raise AuditValidationError(
                    f"tier_of({tenant!r}) returned {chosen!r}, not one of {sorted(self.tiers)}"
                )
            return chosen
        if tenant is None:
            return self.default_tier
        return self.tenant_tiers.get(tenant, self.default_tier)


def archive_dir_for(database: Path, retention: SQLiteRetention) -> Path:
    """Where ``retention`` archives the records of ``database``."""
    if retention.archive_dir is not None:
        return Path(retention.archive_dir)
    return database.with_name(database.name + ".archive")


@dataclass
class RetentionReport:
    """What one run did: records deleted (and archived), per tier, and the files written."""

    deleted: int = 0
    archived: int = 0
    by_tier: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


class _ArchiveWriter:
    """The gzip NDJSON file of one tier in one run, made durable chunk by chunk."""

    def __init__(self, conn: sqlite3.Connection, directory: Path, tier: str, run: str, now_ms: int) -> None:
        stamp = datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        directory.mkdir(parents=True, exist_ok=True)
        self.path = (directory / f"audit-{tier}-{stamp}-{run}-{secrets.token_hex(2)}.ndjson.gz").resolve()
        self._raw: IO[bytes] = self.path.open("xb")
        self._gzip = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6)
        self._digest = hashlib.sha256()
        self.records = 0
        with transaction(conn):
            self.archive_id = conn.execute(
                "INSERT INTO archives (path, tier, records, first_ms, last_ms, sha256, created_ms) "
                "VALUES (?, ?, 0, 0, 0, '', ?) RETURNING id",
                (str(self.path), tier, now_ms),
            ).fetchone()[0]

    def write(self, documents: list[str]) -> None:
        """Append documents and make them durable before their rows are deleted."""
        data = "".join(f"{document}\n" for document in documents).encode("utf-8")
        self._gzip.write(data)
        self._gzip.flush(zlib.Z_SYNC_FLUSH)  # everything so far is readable without the trailer
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self.records += len(documents)

    def close(self, conn: sqlite3.Connection) -> None:
        self._gzip.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        with transaction(conn):
            conn.execute("UPDATE archives SET sha256 = ? WHERE id = ?", (digest, self.archive_id))


def _tenants(conn: sqlite3.Connection) -> Iterator[tuple[str, str | None]]:
    """Every stored tenant key and its tenant id (None: no tenant), by seeks on the tenant-first
    index (one per tenant, not per row)."""
    row = conn.execute("SELECT min(tenant) FROM events").fetchone()
    while row is not None and row[0] is not None:
        key = str(row[0])
        yield key, _tenant_id(conn, key)
        row = conn.execute("SELECT min(tenant) FROM events WHERE tenant > ?", (key,)).fetchone()


def _tenant_id(conn: sqlite3.Connection, key: str) -> str | None:
    """The tenant id behind a stored key (``model.tenancy``): a hashed key's id is in its records."""
    if key == NO_TENANT_KEY:
        return None
    if not key.startswith(HASHED_PREFIX):
        return key
    row = conn.execute(
        "SELECT json_extract(document, '$.audit.organization.original_id') "
        "FROM events WHERE tenant = ? LIMIT 1",
        (key,),
    ).fetchone()
    return str(row[0]) if row is not None and row[0] is not None else key


RemovalHook = Callable[[sqlite3.Connection, Sequence[str]], None]
"""Called in the transaction that deletes records, with their documents (the chain's retention checkpoint)."""


def apply_retention(
    conn: sqlite3.Connection,
    database: Path,
    retention: SQLiteRetention,
    *,
    now_ms: int | None = None,
    removed: RemovalHook | None = None,
) -> RetentionReport:
    """Archive (unless ``archive=False``), then delete, every record older than its tier keeps it.

    ``removed`` sees each deleted chunk's documents inside the deleting transaction.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    run = secrets.token_hex(4)
    report = RetentionReport()
    writers: dict[str, _ArchiveWriter] = {}
    try:
        for tenant, tenant_id in list(_tenants(conn)):
            tier = retention.tier_for(tenant_id)
            cutoff = now - retention.retention_ms(tier)
            while True:
                rows = conn.execute(
                    "SELECT seq, unix_ms, document FROM events WHERE tenant = ? AND unix_ms < ? "
                    "ORDER BY unix_ms, event_id LIMIT ?",
                    (tenant, cutoff, CHUNK),
                ).fetchall()
                if not rows:
                    break
                writer = None
                if retention.archive:
                    writer = writers.get(tier)
                    if writer is None or writer.records >= FILE_RECORDS:
                        if writer is not None:
                            writer.close(conn)
                        writer = writers[tier] = _ArchiveWriter(
                            conn, archive_dir_for(database, retention) / tier, tier, run, now
                        )
                        report.files.append(writer.path)
                    writer.write([str(row[2]) for row in rows])
                with transaction(conn):
                    conn.executemany("DELETE FROM events WHERE seq = ?", [(row[0],) for row in rows])
                    if removed is not None:
                        removed(conn, [str(row[2]) for row in rows])
                    if writer is not None:
                        first, last = min(row[1] for row in rows), max(row[1] for row in rows)
                        conn.execute(
                            "UPDATE archives SET records = records + ?, "
                            "first_ms = CASE WHEN records = 0 THEN ? ELSE min(first_ms, ?) END, "
                            "last_ms = max(last_ms, ?) WHERE id = ?",
                            (len(rows), first, first, last, writer.archive_id),
                        )
                report.deleted += len(rows)
                report.archived += len(rows) if writer is not None else 0
                report.by_tier[tier] = report.by_tier.get(tier, 0) + len(rows)
                if len(rows) < CHUNK:
                    break
    finally:
        for writer in writers.values():
            writer.close(conn)
    return report


@dataclass(frozen=True)
class ArchiveFile:
    """An archive file retention wrote, as the ``archives`` table records it."""

    path: Path
    tier: str
    records: int
    first_ms: int
    last_ms: int
    sha256: str
    created_ms: int

    @property
    def complete(self) -> bool:
        """Whether the run that wrote it finished (it has a checksum)."""
        return bool(self.sha256)


def list_archives(conn: sqlite3.Connection) -> list[ArchiveFile]:
    """The archive files of this store, oldest first."""
    rows = conn.execute(
        "SELECT path, tier, records, first_ms, last_ms, sha256, created_ms FROM archives ORDER BY id"
    ).fetchall()
    return [
        ArchiveFile(
            Path(row[0]), str(row[1]), int(row[2]), int(row[3]), int(row[4]), str(row[5]), int(row[6])
        )
        for row in rows
    ]


@dataclass
class RestoreReport:
    """What restoring one archive file did."""

    read: int = 0
    inserted: int = 0
    damaged: str | None = None
    """Why reading stopped early (a file cut short by a crash), or None."""


def read_archive(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each archived document as (its JSON text, the parsed object); raises EOFError/OSError on damage."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            text = line.rstrip("\n")
            if text:
                yield text, loads(text)


def restore_archive(conn: sqlite3.Connection, path: Path) -> RestoreReport:
    """Load an archive file's records into the store ``conn`` opens; skips records it holds already.

    The documents are stored as they were archived, byte for byte.
    """
    report = RestoreReport()
    batch: list[tuple[Any, ...]] = []

    def store() -> None:
        with transaction(conn):
            report.inserted += insert_rows(conn, batch)
        batch.clear()

    try:
        for text, document in read_archive(path):
            batch.append(row_of(AuditEvent.from_document(document), text))
            report.read += 1
            if len(batch) >= CHUNK:
                store()
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        report.damaged = f"{type(exc).__name__}: {exc}"
    if batch:
        store()
    return report
