"""``SQLiteStore``: audit records in one SQLite file; both a query store and a sink.

The embedded default for one machine, demos and tests (OpenSearch is what scales out).

Layout (schema version 1, kept in ``PRAGMA user_version``):

* ``events``: one row per record. ``seq`` (AUTOINCREMENT, so it only grows) orders
  insertion for ``tail``; one column per filter; ``document`` holds the full ECS
  document as JSON, which is what every read returns. ``UNIQUE (tenant, event_id)``
  makes a replayed record a no-op (``INSERT OR IGNORE``).
* One index per filter, each ``(tenant, <filter>, unix_ms DESC, event_id DESC)``: the
  tenant scope narrows first and rows come out already newest first, so a first page
  reads ``page_size`` index entries. Emails compare ``NOCASE``. ``unix_ms`` alone is
  indexed for retention, which crosses tenants.
* ``events_fts``: an FTS5 index over the resource name, the action id and label, and
  both user emails, with ``events`` as its external content (kept in step by
  triggers, nothing stored twice). ``unicode61 remove_diacritics 2`` folds case and
  accents; ``prefix='2 3'`` keeps short prefix searches fast.

Free text never reaches FTS5 as syntax: ``fts_match`` keeps only the characters the
tokenizer indexes (letters, digits, marks), so each whitespace-separated word becomes a
quoted phrase with a trailing ``*`` and the phrases are ANDed. ``OR``, ``NEAR``, ``*``,
quotes, ``:``, parentheses and NUL are separators, just as they are in the index.

Writes: ``emit`` (the sink side) puts the event on a bounded queue and returns; one
background thread writes batches, one transaction each. When the queue is full the
caller writes its event itself (back-pressure, never a dropped record). ``write`` is
the synchronous bulk load. The database runs in WAL mode, so readers never wait for
the writer, and several processes (gunicorn workers) can share one file.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import sqlite3
import sys
import threading
import time
import unicodedata
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

from audit_middleware.errors import AuditError
from audit_middleware.query.model import NO_TENANT, AuditQuery, Cursor, Page, QueryError
from audit_middleware.query.store import AuditStore
from audit_middleware.schema import AuditEvent
from audit_middleware.serialization import dumps, loads
from audit_middleware.sinks.base import Sink

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "SQLiteStoreError", "fts_match"]

SCHEMA_VERSION: Final = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_READ_BATCH = 1000  # rows per statement when iterating or tailing
_WRITE_BATCH = 1000  # rows per transaction
_PURGE_CHUNK = 5000  # rows deleted per transaction, so writers are never held up for long
_IDLE_CONNECTIONS = 4
_WRITE_RETRIES = (0.05, 0.25, 1.0)  # seconds between attempts before a batch is reported undeliverable
_STOP: Final = object()

_FILTER_INDEXES = (
    "action",
    "resource_type",
    "user_id",
    "user_email",
    "effective_user_id",
    "effective_user_email",
    "project",
    "outcome",
)
_INSERT = """
    INSERT OR IGNORE INTO events (
        tenant, unix_ms, event_id, action, action_label, resource_type, resource_id, resource_name,
        user_id, user_email, effective_user_id, effective_user_email, project, outcome, document
    ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

_USER_SEQS = """
    SELECT seq FROM events WHERE tenant = ? AND user_id = ?
    UNION ALL SELECT seq FROM events WHERE tenant = ? AND user_email = ?
    UNION ALL SELECT seq FROM events WHERE tenant = ? AND effective_user_id = ?
    UNION ALL SELECT seq FROM events WHERE tenant = ? AND effective_user_email = ?
"""

_SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        unix_ms INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        action TEXT NOT NULL,
        action_label TEXT NOT NULL,
        resource_type TEXT,
        resource_id TEXT,
        resource_name TEXT,
        user_id TEXT,
        user_email TEXT COLLATE NOCASE,
        effective_user_id TEXT,
        effective_user_email TEXT COLLATE NOCASE,
        project TEXT,
        outcome TEXT NOT NULL,
        document TEXT NOT NULL,
        UNIQUE (tenant, event_id)
    )
    """,
    "CREATE INDEX events_by_time ON events (tenant, unix_ms DESC, event_id DESC)",
    *(
        f"CREATE INDEX events_by_{column} ON events (tenant, {column}, unix_ms DESC, event_id DESC)"
        for column in _FILTER_INDEXES
    ),
    "CREATE INDEX events_for_retention ON events (unix_ms)",
    """
    CREATE VIRTUAL TABLE events_fts USING fts5(
        resource_name, action, action_label, user_email, effective_user_email,
        content='events', content_rowid='seq',
        tokenize='unicode61 remove_diacritics 2', prefix='2 3'
    )
    """,
    """
    CREATE TRIGGER events_fts_insert AFTER INSERT ON events BEGIN
        INSERT INTO events_fts (rowid, resource_name, action, action_label, user_email, effective_user_email)
        VALUES (new.seq, new.resource_name, new.action, new.action_label, new.user_email,
                new.effective_user_email);
    END
    """,
    """
    CREATE TRIGGER events_fts_delete AFTER DELETE ON events BEGIN
        INSERT INTO events_fts (
            events_fts, rowid, resource_name, action, action_label, user_email, effective_user_email
        ) VALUES ('delete', old.seq, old.resource_name, old.action, old.action_label, old.user_email,
                  old.effective_user_email);
    END
    """,
    """
    CREATE TRIGGER events_fts_update AFTER UPDATE ON events BEGIN
        INSERT INTO events_fts (
            events_fts, rowid, resource_name, action, action_label, user_email, effective_user_email
        ) VALUES ('delete', old.seq, old.resource_name, old.action, old.action_label, old.user_email,
                  old.effective_user_email);
        INSERT INTO events_fts (rowid, resource_name, action, action_label, user_email, effective_user_email)
        VALUES (new.seq, new.resource_name, new.action, new.action_label, new.user_email,
                new.effective_user_email);
    END
    """,
)


class SQLiteStoreError(AuditError):
    """The SQLite file cannot be used; the message says why."""


def _is_token_char(char: str) -> bool:
    # What FTS5's unicode61 tokenizer indexes: letters, numbers, marks, private use.
    # Everything else (spaces, punctuation, symbols, controls) separates tokens.
    category = unicodedata.category(char)
    return category[0] in "LNM" or category == "Co"


def _fts_string(text: str) -> str:
    """``text`` as an FTS5 string literal: in double quotes, inner quotes doubled."""
    return '"' + text.replace('"', '""') + '"'


def fts_match(text: str) -> str | None:
    """An FTS5 MATCH expression for free text, or None when it has nothing to look for.

    Each whitespace-separated word is cut into the tokens the index holds and becomes
    one quoted phrase with a prefix ``*``; all phrases must match. Only token
    characters and spaces end up between the quotes: no user character is syntax.

    >>> fts_match('Prod "db*" OR ann@ex')
    '"prod"* AND "db"* AND "or"* AND "ann ex"*'
    >>> fts_match("*) NEAR(") is None
    False
    >>> fts_match("*** ()") is None
    True
    """
    phrases: list[str] = []
    for word in text.split():
        tokens = "".join(char if _is_token_char(char) else " " for char in word.casefold()).split()
        kept = [token for token in tokens if any(unicodedata.category(c)[0] in "LN" for c in token)]
        if kept:
            phrases.append(_fts_string(" ".join(kept)) + "*")
    unique = list(dict.fromkeys(phrases))
    return " AND ".join(unique) if unique else None


def _epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise QueryError("times must be timezone-aware (UTC)")
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _row(event: AuditEvent) -> tuple[Any, ...]:
    """The ``events`` row of ``event`` (its columns come from the stored document)."""
    document = event.to_document()
    user = document.get("user", {})
    effective = user.get("effective", {})
    resource = event.resource
    return (
        event.tenant.id if event.tenant is not None else NO_TENANT,
        event.unix_ms,
        event.id,
        event.action.id,
        event.action.label,
        resource.type if resource else None,
        resource.id if resource else None,
        resource.name if resource else None,
        user.get("id"),
        user.get("email"),
        effective.get("id"),
        effective.get("email"),
        event.project.id if event.project is not None else None,
        event.outcome,
        dumps(document).decode("utf-8"),
    )


class _Filter:
    """The SQL ``WHERE`` of a query: clauses with ``?`` placeholders and their values."""

    __slots__ = ("clauses", "params")

    def __init__(self, clauses: list[str], params: list[Any]) -> None:
        self.clauses = clauses
        self.params = params

    @classmethod
    def of(cls, query: AuditQuery) -> _Filter | None:
        """The filter of ``query`` (its cursor aside), or None when nothing can match.

        The user and text filters are sets of ``seq`` (from the four covering user
        indexes, or from FTS) that each index entry's rowid is tested against, without
        reading the table. The ``+`` keeps SQLite from driving the query by that set
        (row lookups, then a sort of every match): the rows are read in index order and
        the first page ends after ``page_size`` hits. Common terms cost little; a rare
        one costs one pass over the tenant's index entries, never a table scan.
        """
        where = cls(["tenant = ?"], [query.tenant])
        for column, values in (("action", query.actions), ("resource_type", query.resource_types)):
            if values:
                where.add(f"{column} IN ({', '.join('?' * len(values))})", *values)
        if query.user:
            where.add(
                f"+seq IN ({_USER_SEQS})", *[value for _ in range(4) for value in (query.tenant, query.user)]
            )
        if query.project:
            where.add("project = ?", query.project)
        if query.outcome:
            where.add("outcome = ?", query.outcome)
        if query.start_ms is not None:
            where.add("unix_ms >= ?", query.start_ms)
        if query.end_ms is not None:
            where.add("unix_ms < ?", query.end_ms)
        if query.text:
            match = fts_match(query.text)
            if match is None:
                return None
            where.add("+seq IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)", match)
        return where

    def add(self, clause: str, *params: Any) -> _Filter:
        """Add one clause (ANDed) and its values; returns self."""
        self.clauses.append(clause)
        self.params.extend(params)
        return self

    def copy(self) -> _Filter:
        """An independent copy, to add clauses to."""
        return _Filter(list(self.clauses), list(self.params))

    def before(self, cursor: Cursor | None) -> _Filter:
        """A copy that also requires rows older than ``cursor`` (newest-first keyset)."""
        copy = self.copy()
        if cursor is not None:
            copy.add("(unix_ms, event_id) < (?, ?)", cursor.unix_ms, cursor.event_id)
        return copy

    @property
    def sql(self) -> str:
        """The clauses joined with AND."""
        return " AND ".join(self.clauses)


class SQLiteStore(AuditStore, Sink):
    """Audit records in a SQLite file, searchable like the OpenSearch store.

    ``busy_timeout`` is how long a statement waits for another writer's lock;
    ``durable=True`` syncs every transaction to disk (``synchronous=FULL``; the default
    ``NORMAL`` survives a crash of the process, not of the machine); ``queue_size``
    bounds the events waiting for the background writer.

    >>> store = SQLiteStore("audit.sqlite3")  # doctest: +SKIP
    >>> store.search(AuditQuery.build("acme", since="7d", search="web")).events  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        durable: bool = False,
        queue_size: int = 10_000,
    ) -> None:
        if str(path) == ":memory:" or str(path).startswith("file:"):
            raise SQLiteStoreError("SQLiteStore needs a file path: every thread opens its own connection")
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.path = Path(path)
        self._busy_ms = int(busy_timeout * 1000)
        self._synchronous = "FULL" if durable else "NORMAL"
        self._queue_size = queue_size
        self._closed = False
        self.written = 0
        """Events this process's background writer stored (replays included)."""
        self.undelivered = 0
        """Events this process could not store, written to stderr instead."""
        self._reset_process_state()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connection() as conn:
                self._ensure_schema(conn)
        except (sqlite3.Error, SQLiteStoreError) as exc:
            self._close_idle()
            if isinstance(exc, SQLiteStoreError):
                raise
            raise SQLiteStoreError(f"cannot open the audit store {str(self.path)!r}: {exc}") from exc

    def _reset_process_state(self) -> None:
        """Fresh locks, queue, pool, writer and counters: at start, and in a child after fork."""
        self._pid = os.getpid()
        self.written = self.undelivered = 0
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._queue: queue.Queue[Any] = queue.Queue(self._queue_size)
        self._pending = 0
        self._drained = threading.Condition()
        self._writer: threading.Thread | None = None

    def _check_fork(self) -> None:
        # Neither a connection nor a thread survives fork(): the child starts over
        # (what the parent had queued, the parent writes).
        if os.getpid() != self._pid:
            self._reset_process_state()

    # -- connections ---------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self._busy_ms / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA temp_store = MEMORY")  # trigger statement journals: no temp files
        return conn

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """Borrow a connection (one thread at a time uses it), returned to a small pool."""
        self._check_fork()
        with self._pool_lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.rollback()
            with self._pool_lock:
                keep = len(self._idle) < _IDLE_CONNECTIONS
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        """Create the schema in a new file; accept the current version; refuse a newer one."""
        version = self._schema_version(conn)
        if version == SCHEMA_VERSION:
            return
        # journal_mode is a property of the file, set once, outside any transaction
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise SQLiteStoreError(f"{str(self.path)!r} cannot use WAL mode (got {mode!r})")
        conn.execute("BEGIN IMMEDIATE")  # one process creates; the others wait, then find it done
        if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")

    def _schema_version(self, conn: sqlite3.Connection) -> int:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise SQLiteStoreError(
                f"{str(self.path)!r} has schema version {version}, made by a newer audit-middleware "
                f"(this one reads version {SCHEMA_VERSION}): upgrade audit-middleware"
            )
        if version == 0 and conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]:
            raise SQLiteStoreError(f"{str(self.path)!r} is a SQLite database, but not an audit store")
        return version

    # -- writing -------------------------------------------------------------------

    def write(self, events: Iterable[AuditEvent]) -> int:
        """Store ``events`` now, in batched transactions; returns how many were new.

        Events already stored (same tenant and id) are skipped.
        """
        inserted = 0
        batch: list[tuple[Any, ...]] = []
        with self._connection() as conn:
            for event in events:
                batch.append(_row(event))
                if len(batch) >= _WRITE_BATCH:
                    inserted += self._insert(conn, batch)
                    batch.clear()
            if batch:
                inserted += self._insert(conn, batch)
        return inserted

    @staticmethod
    def _insert(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> int:
        conn.execute("BEGIN IMMEDIATE")
        try:
            inserted = conn.executemany(_INSERT, rows).rowcount
        except BaseException:
            conn.rollback()
            raise
        conn.execute("COMMIT")
        return max(inserted, 0)

    def emit(self, event: AuditEvent) -> None:
        """Queue ``event`` for the background writer; never raises, never drops it.

        With a full queue (the disk cannot keep up) the caller stores the event itself.
        """
        try:
            self._check_fork()
            if not self._closed:
                self._start_writer()
                with self._drained:
                    self._pending += 1
                try:
                    self._queue.put_nowait(event)
                except queue.Full:
                    self._done(0, 1)
                else:
                    return
            self.write([event])
        except Exception as exc:  # noqa: BLE001 - a sink must not raise into the request
            self._report_undelivered([event], exc)

    def _start_writer(self) -> None:
        writer = self._writer
        if writer is not None and writer.is_alive():
            return
        with self._pool_lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(
                    target=self._write_loop, name="audit-sqlite-writer", daemon=True
                )
                self._writer.start()
                atexit.register(_close_at_exit, weakref.ref(self))

    def _write_loop(self) -> None:
        conn = self._connect()
        try:
            while True:
                item = self._queue.get()
                batch: list[AuditEvent] = []
                stopping = item is _STOP
                if not stopping:
                    batch.append(item)
                while len(batch) < _WRITE_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    batch.append(item)
                if batch:
                    self._write_batch(conn, batch)
                if stopping:
                    return
        finally:
            conn.close()

    def _write_batch(self, conn: sqlite3.Connection, batch: list[AuditEvent]) -> None:
        written = 0
        try:
            rows = [_row(event) for event in batch]
            for pause in (*_WRITE_RETRIES, None):
                try:
                    self._insert(conn, rows)
                    break
                except sqlite3.OperationalError:  # locked beyond busy_timeout, disk full, I/O error
                    if pause is None:
                        raise
                    time.sleep(pause)
            written = len(batch)
        except Exception as exc:  # noqa: BLE001 - the writer thread must outlive a bad batch
            self._report_undelivered(batch, exc)
        finally:
            self._done(written, len(batch))

    def _done(self, written: int, count: int) -> None:
        """``count`` queued events are finished with, ``written`` of them stored."""
        with self._drained:
            self.written += written
            self._pending -= count
            if self._pending <= 0:
                self._drained.notify_all()

    def _report_undelivered(self, events: Sequence[AuditEvent], exc: BaseException) -> None:
        # Better a record on stderr, where process supervisors keep it, than no record.
        with self._drained:
            self.undelivered += len(events)
        for event in events:
            with contextlib.suppress(Exception):
                line = dumps({"audit_middleware_undelivered": event.to_document(), "error": repr(exc)})
                sys.stderr.write(line.decode("utf-8") + "\n")

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued event is stored; False if ``timeout`` ran out first."""
        self._check_fork()
        with self._drained:
            return self._drained.wait_for(lambda: self._pending <= 0, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Store what is queued, stop the writer and close connections.

        The store stays usable: later reads open connections again and later events
        are written synchronously.
        """
        self._check_fork()
        drained = self.flush(timeout)
        self._closed = True
        writer = self._writer
        if writer is not None and writer.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put(_STOP, timeout=timeout)
            writer.join(timeout)
        if not drained:
            sys.stderr.write(
                f"audit-middleware: {self._pending} audit events were still being written to "
                f"{self.path} when the store closed\n"
            )
        self._close_idle(optimize=True)

    def _close_idle(self, *, optimize: bool = False) -> None:
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            if optimize:  # lets SQLite refresh its statistics where queries would benefit
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA optimize")
            conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------

    def _documents(self, sql: str, params: Sequence[Any]) -> list[AuditEvent]:
        with self._connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [AuditEvent.from_document(loads(row[0])) for row in rows]

    def _newest_first(self, where: _Filter, limit: int) -> list[AuditEvent]:
        sql = (
            f"SELECT document FROM events WHERE {where.sql} "  # noqa: S608 - only placeholders are interpolated
            "ORDER BY unix_ms DESC, event_id DESC LIMIT ?"
        )
        return self._documents(sql, [*where.params, limit])

    def search(self, query: AuditQuery) -> Page:
        """One page of matching events, newest first; ``next_cursor`` is None on the last page."""
        where = _Filter.of(query)
        if where is None:
            return Page(events=[], next_cursor=None)
        events = self._newest_first(where.before(query.cursor), query.page_size + 1)
        page = events[: query.page_size]
        more = len(events) > query.page_size
        return Page(events=page, next_cursor=Cursor.after(page[-1]).encode() if more else None)

    def get(self, tenant: str, event_id: str) -> AuditEvent | None:
        """The event ``event_id`` of ``tenant``; None when absent or another tenant's."""
        if not isinstance(tenant, str) or not tenant:
            raise QueryError("a tenant is required: every query is scoped to one tenant")
        if not isinstance(event_id, str) or not event_id:
            return None
        found = self._documents(
            "SELECT document FROM events WHERE tenant = ? AND event_id = ?", [tenant, event_id]
        )
        return found[0] if found else None

    def count(self, query: AuditQuery) -> int:
        """How many events match (page size and cursor are ignored)."""
        where = _Filter.of(query)
        if where is None:
            return 0
        with self._connection() as conn:
            row = conn.execute(f"SELECT count(*) FROM events WHERE {where.sql}", where.params).fetchone()  # noqa: S608 - only placeholders are interpolated
        return int(row[0])

    def iterate(self, query: AuditQuery) -> Iterator[AuditEvent]:
        """Every matching event, newest first, read ``1000`` at a time.

        Events stored after the iteration started are left out, so an export is the
        set of records that existed when it began.
        """
        where = _Filter.of(query)
        if where is None:
            return iter(())
        return self._iterate(where, query.cursor, self._max_seq())

    def _iterate(self, where: _Filter, cursor: Cursor | None, snapshot: int) -> Iterator[AuditEvent]:
        where = where.copy().add("seq <= ?", snapshot)
        while True:
            batch = self._newest_first(where.before(cursor), _READ_BATCH)
            yield from batch
            if len(batch) < _READ_BATCH:
                return
            cursor = Cursor.after(batch[-1])

    def _max_seq(self) -> int:
        with self._connection() as conn:
            row = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        return int(row[0])

    def tail(
        self,
        query: AuditQuery,
        since: datetime | None = None,
        *,
        poll_interval: float = 1.0,
        stop: threading.Event | None = None,
    ) -> Iterator[list[AuditEvent]]:
        """Live: the events stored after this call (or at/after ``since``), newest first.

        The starting point is taken when ``tail`` is called, not when iteration starts.
        With ``since``, the matching events at or after it come first, oldest batch
        first. Then every ``poll_interval`` seconds the events stored since the last
        poll (by insertion order, so a record that arrives late with an old timestamp
        is still seen) are yielded; polls that find nothing yield nothing.
        """
        where = _Filter.of(query)
        since_ms = None if since is None else _epoch_ms(since)
        if where is not None and since_ms is not None:
            where.add("unix_ms >= ?", since_ms)
        return self._follow(where, self._max_seq(), since_ms is not None, poll_interval, stop)

    def _follow(
        self,
        where: _Filter | None,
        seen: int,
        history: bool,
        poll_interval: float,
        stop: threading.Event | None,
    ) -> Iterator[list[AuditEvent]]:
        stop = stop or threading.Event()
        if where is not None and history:
            yield from self._history(where, seen)
        while not stop.is_set():
            newest = self._max_seq()
            if where is not None and newest > seen:
                yield from self._arrivals(where, seen, newest)
            seen = max(seen, newest)
            stop.wait(poll_interval)

    def _history(self, where: _Filter, snapshot: int) -> Iterator[list[AuditEvent]]:
        """What matched when the tail started, oldest batch first, each newest first."""
        condition = where.copy().add("seq <= ?", snapshot)
        after: tuple[int, str] | None = None
        while True:
            page = condition.copy()
            if after is not None:
                page.add("(unix_ms, event_id) > (?, ?)", *after)
            sql = (
                f"SELECT document FROM events WHERE {page.sql} "  # noqa: S608 - only placeholders are interpolated
                "ORDER BY unix_ms, event_id LIMIT ?"
            )
            batch = self._documents(sql, [*page.params, _READ_BATCH])
            if batch:
                yield batch[::-1]
            if len(batch) < _READ_BATCH:
                return
            after = (batch[-1].unix_ms, batch[-1].id)

    def _arrivals(self, where: _Filter, seen: int, newest: int) -> Iterator[list[AuditEvent]]:
        """Matching rows stored after ``seen`` up to ``newest``, a batch at a time."""
        while seen < newest:
            # NOT INDEXED: walk the few new rows by seq, never a whole tenant's index
            sql = (
                f"SELECT seq, document FROM events NOT INDEXED WHERE {where.sql} "  # noqa: S608 - only placeholders are interpolated
                "AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
            )
            with self._connection() as conn:
                rows = conn.execute(sql, [*where.params, seen, newest, _READ_BATCH]).fetchall()
            if not rows:
                return
            seen = int(rows[-1][0])
            events = [AuditEvent.from_document(loads(row[1])) for row in rows]
            events.sort(key=lambda event: (event.unix_ms, event.id), reverse=True)
            yield events
            if len(rows) < _READ_BATCH:
                return

    # -- retention -----------------------------------------------------------------

    def purge_older_than(self, cutoff: datetime) -> int:
        """Delete every event (of every tenant) older than ``cutoff``, in small transactions.

        Returns how many were deleted.
        """
        cutoff_ms = _epoch_ms(cutoff)
        deleted = 0
        with self._connection() as conn:
            while True:
                conn.execute("BEGIN IMMEDIATE")
                removed = conn.execute(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE unix_ms < ? LIMIT ?)",
                    (cutoff_ms, _PURGE_CHUNK),
                ).rowcount
                conn.execute("COMMIT")
                deleted += removed
                if removed < _PURGE_CHUNK:
                    return deleted


def _close_at_exit(ref: weakref.ReferenceType[SQLiteStore]) -> None:
    store = ref()
    if store is not None and not store._closed:
        store.close(timeout=5.0)
