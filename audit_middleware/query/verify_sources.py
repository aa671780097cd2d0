"""What ``verify`` reads: a SQLite store's chains and checkpoints, an NDJSON file, an anchor file.

Each source yields ``query.verify.Entry`` values grouped by chain, each chain in
sequence order, records without a link last, as ``verify_chains`` needs, and in
constant memory:

* SQLite: one streaming cursor over the ``events_by_chain`` index (``sqlite.chains``);
* an NDJSON file (records, and ``{"checkpoint": ...}`` lines): the file may be in any
  order (an export is newest first), so entries are sorted externally, in runs of
  ``_RUN`` entries written to temporary files and merged;
* an anchor file: checkpoint lines only;
* OpenSearch: ``search_after`` per chain (``OpenSearchSource``).
"""

from __future__ import annotations

import heapq
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from audit_middleware.model.checkpoints import CHECKPOINT_KEY, Checkpoint, checkpoint_from_json
from audit_middleware.model.timestamps import parse_timestamp
from audit_middleware.opensearch.chains import checkpoints_stream
from audit_middleware.query.verify import Entry, StreamRetention, entry_of
from audit_middleware.query.verify_retention import read_retention
from audit_middleware.sqlite.chains import iter_checkpoints
from audit_middleware.sqlite.schema import SQLiteStoreError

__all__ = ["FileSource", "OpenSearchSource", "SQLiteSource", "read_anchor"]

_RUN: Final = 200_000  # entries sorted in memory before they go to a temporary file
_SEQ_OFFSET: Final = 2**63  # sequence numbers shifted to be positive in the sort key


def _unix_ms(document: dict[str, Any]) -> int:
    try:
        return parse_timestamp(str(document["@timestamp"]))
    except (KeyError, ValueError, TypeError):
        return 0


@dataclass
class SQLiteSource:
    """The chains of the SQLite store at ``path``, opened read-only."""

    path: Path

    def _connect(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise SQLiteStoreError(f"no audit store at {str(self.path)!r}")
        conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < 3:
            conn.close()
            raise SQLiteStoreError(
                f"{str(self.path)!r} has no hash chains yet (schema version {version}); "
                "open it once with this version to upgrade it"
            )
        return conn

    def count(self) -> int:
        """How many records the store holds (for the progress bar)."""
        conn = self._connect()
        try:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
        finally:
            conn.close()

    def checkpoints(self) -> list[Checkpoint | str]:
        """The store's checkpoints (a malformed one as its error)."""
        conn = self._connect()
        try:
            return list(iter_checkpoints(conn))
        finally:
            conn.close()

    def entries(self) -> Iterator[Entry]:
        """Every record, by chain and sequence number, then those without a link."""
        conn = self._connect()
        try:
            for statement in (
                "SELECT seq, unix_ms, document FROM events WHERE chain_id IS NOT NULL "
                "ORDER BY chain_id, chain_seq, seq",
                "SELECT seq, unix_ms, document FROM events WHERE chain_id IS NULL ORDER BY seq",
            ):
                for row_id, unix_ms, document in conn.execute(statement):
                    yield _entry(document, f"row {row_id}", int(unix_ms))
        finally:
            conn.close()


def _entry(text: str | bytes, where: str, unix_ms: int | None = None) -> Entry:
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        return Entry(None, 0, "", "", b"", "", 0, f"{where} (not a JSON object)")
    return entry_of(document, where, _unix_ms(document) if unix_ms is None else unix_ms)


@dataclass
class FileSource:
    """An NDJSON file of stored documents and checkpoint lines (``{"checkpoint": ...}``)."""

    path: Path
    _checkpoints: list[Checkpoint | str] = field(default_factory=list)
    _lines: int = 0

    def count(self) -> int:
        """How many record lines the file holds (counted on a first pass)."""
        with self.path.open("rb") as handle:
            return sum(1 for line in handle if line.strip() and not line.startswith(b'{"checkpoint"'))

    def checkpoints(self) -> list[Checkpoint | str]:
        """The file's checkpoint lines (known after ``entries`` was read, or read now)."""
        if not self._lines:
            self._checkpoints = list(read_anchor(self.path))
        return self._checkpoints

    def entries(self) -> Iterator[Entry]:
        """Every record of the file, sorted by chain and sequence number through temporary runs."""
        with tempfile.TemporaryDirectory(prefix="audit-verify-") as scratch:
            runs = self._sorted_runs(Path(scratch))
            yield from (_decode(line) for line in heapq.merge(*(_lines_of(run) for run in runs)))

    def _sorted_runs(self, scratch: Path) -> list[Path]:
        runs: list[Path] = []
        batch: list[bytes] = []
        checkpoints: list[Checkpoint | str] = []
        with self.path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                self._lines = number
                if not line.strip():
                    continue
                if line.startswith(b'{"' + CHECKPOINT_KEY.encode() + b'"'):
                    checkpoints.append(_checkpoint_line(line, number))
                    continue
                entry = (
                    _link_line(line, number)
                    if line.startswith(_LINK_LINE)
                    else _entry(line, f"line {number}")
                )
                batch.append(_encode(entry))
                if len(batch) >= _RUN:
                    runs.append(_write_run(scratch, batch))
                    batch = []
        if batch:
            runs.append(_write_run(scratch, batch))
        self._checkpoints = checkpoints
        return runs


_LINK_LINE: Final = b'{"chain_link"'


def _link_line(line: bytes, number: int) -> Entry:
    """A record that is not in the file, by its link and digest only (``{"chain_link": {...}}``).

    An export of one tenant carries these for the other tenants' records between its own,
    so its chain verifies end to end without their content.
    """
    where = f"line {number} (link only)"
    try:
        link = orjson.loads(line)["chain_link"]
        return Entry(
            str(link["id"]),
            int(link["seq"]),
            str(link["prev"]),
            str(link["hash"]),
            bytes.fromhex(str(link["digest"])),
            "",
            0,
            where,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return Entry(None, 0, "", "", b"", "", 0, f"{where}: malformed")


def _encode(entry: Entry) -> bytes:
    # The sort key leads the line, fixed width so bytes sort as the key: the chain id as
    # JSON text (records without one last: 0xff sorts after every '"'), seq, line number.
    chain = orjson.dumps(entry.chain) if entry.chain is not None else b"\xff"
    seq = min(max(entry.seq + _SEQ_OFFSET, 0), 10**20 - 1)
    body = orjson.dumps(
        [
            entry.chain,
            entry.seq,
            entry.prev,
            entry.hash,
            entry.digest.hex(),
            entry.event_id,
            entry.unix_ms,
            entry.where,
        ]
    )
    return b"%s\x00%020d%020d\t%s\n" % (chain, seq, _line_number(entry.where), body)


def _line_number(where: str) -> int:
    parts = where.split(" ")
    return int(parts[1]) if len(parts) > 1 and parts[0] == "line" and parts[1].isdigit() else 0


def _decode(line: bytes) -> Entry:
    chain, seq, prev, hash_, digest, event_id, unix_ms, where = orjson.loads(line.split(b"\t", 1)[1])
    return Entry(chain, seq, prev, hash_, bytes.fromhex(digest), event_id, unix_ms, where)


def _write_run(scratch: Path, batch: list[bytes]) -> Path:
    batch.sort()
    fd, name = tempfile.mkstemp(dir=scratch, suffix=".run")
    with os.fdopen(fd, "wb") as out:
        out.writelines(batch)
    return Path(name)


def _lines_of(run: Path) -> Iterator[bytes]:
    with run.open("rb") as handle:
        yield from handle


def read_anchor(path: Path) -> Iterator[Checkpoint | str]:
    """The checkpoint lines of an anchor (or export) file; a damaged line as its error."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.startswith(b'{"' + CHECKPOINT_KEY.encode() + b'"'):
                yield _checkpoint_line(line, number)
            elif line.strip() and path.suffix != ".ndjson":
                yield f"{path.name} line {number}: not a checkpoint"


def _checkpoint_line(line: bytes, number: int) -> Checkpoint | str:
    try:
        return checkpoint_from_json(orjson.loads(line))
    except Exception as exc:  # noqa: BLE001 - a damaged line is reported, not fatal
        return f"line {number}: {exc}"


@dataclass
class OpenSearchSource:
    """The chains of the audit data streams ``{prefix}-*`` and the ``{prefix}_checkpoints`` stream.

    Chains are listed with a composite aggregation on ``audit.chain.id``, then each is read
    in sequence order with ``search_after`` (pages of ``page`` hits); records without a
    link last. ``retention`` reads what ISM may have removed: each tier's policy, the
    stream's backing indices and the snapshots of the policy's repository.
    """

    client: Any
    prefix: str
    page: int = 2000

    @property
    def _pattern(self) -> str:
        return f"{self.prefix}-*"

    def count(self) -> int:
        """How many records the audit data streams hold."""
        answer = self.client.count(index=self._pattern, params={"ignore_unavailable": "true"})
        return int(answer["count"])

    def _pages(self, index: str, query: dict[str, Any], sort: list[Any]) -> Iterator[dict[str, Any]]:
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {"size": self.page, "query": query, "sort": sort}
            if after is not None:
                body["search_after"] = after
            hits = self.client.search(
                index=index, body=body, params={"ignore_unavailable": "true", "allow_no_indices": "true"}
            )["hits"]["hits"]
            yield from hits
            if len(hits) < self.page:
                return
            after = hits[-1]["sort"]

    def checkpoints(self) -> list[Checkpoint | str]:
        """Every checkpoint document of the checkpoints stream."""
        found: list[Checkpoint | str] = []
        sort = [{"checkpoint.chain": "asc"}, {"checkpoint.last_seq": "asc"}, {"checkpoint.kind": "asc"}]
        try:
            for hit in self._pages(checkpoints_stream(self.prefix), {"match_all": {}}, sort):
                try:
                    found.append(checkpoint_from_json(hit["_source"]))
                except Exception as exc:  # noqa: BLE001, PERF203 - a damaged checkpoint is reported, not fatal
                    found.append(f"{hit['_index']}/{hit['_id']}: {exc}")
        except Exception as exc:
            if getattr(exc, "status_code", None) != 404:
                raise
            # no checkpoint was written yet: the stream does not exist
        return found

    def _chains(self) -> Iterator[str]:
        after: dict[str, Any] | None = None
        while True:
            composite: dict[str, Any] = {
                "size": 500,
                "sources": [{"chain": {"terms": {"field": "audit.chain.id"}}}],
            }
            if after is not None:
                composite["after"] = after
            answer = self.client.search(
                index=self._pattern,
                body={"size": 0, "aggs": {"chains": {"composite": composite}}},
                params={"ignore_unavailable": "true", "allow_no_indices": "true"},
            )
            aggregation = answer.get("aggregations", {}).get("chains", {})
            buckets = aggregation.get("buckets", [])
            yield from (str(bucket["key"]["chain"]) for bucket in buckets)
            after = aggregation.get("after_key")
            if not buckets or after is None:
                return

    def entries(self) -> Iterator[Entry]:
        """Every record: chain by chain in sequence order, then those without a link."""
        by_seq = [{"audit.chain.seq": "asc"}, {"event.id": "asc"}]
        for chain in self._chains():
            for hit in self._pages(self._pattern, {"term": {"audit.chain.id": chain}}, by_seq):
                yield self._entry(hit)
        unchained = {"bool": {"must_not": [{"exists": {"field": "audit.chain.id"}}]}}
        for hit in self._pages(self._pattern, unchained, [{"@timestamp": "asc"}, {"event.id": "asc"}]):
            yield self._entry(hit)

    @staticmethod
    def _entry(hit: dict[str, Any]) -> Entry:
        document = hit["_source"]
        return entry_of(document, f"{hit['_index']}/{hit['_id']}", _unix_ms(document))

    def retention(self, now_ms: int) -> dict[str, StreamRetention]:
        """Data stream -> what its ISM policy may have removed (``query.verify_retention``)."""
        return read_retention(self.client, self.prefix, now_ms)
