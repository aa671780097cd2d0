"""``SQLiteStore``: finding audit records in the embedded SQLite store (the read side).

The file's layout is in ``audit_middleware.sqlite.schema``; ``sinks.sqlite.SQLiteSink``
writes it. The database runs in WAL mode, so reads never wait for the writer.

Free text never reaches FTS5 as syntax: ``fts_match`` keeps only the characters the
tokenizer indexes (letters, digits, marks), so each whitespace-separated word becomes a
quoted phrase with a trailing ``*`` and the phrases are ANDed. ``OR``, ``NEAR``, ``*``,
quotes, ``:``, parentheses and NUL are separators, just as they are in the index.
"""

from __future__ import annotations

import os
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from audit_middleware.model.encoding import loads
from audit_middleware.model.event import AuditEvent
from audit_middleware.model.tenancy import NoProject, ProjectSelector, TenantSelector, scope_key, tenant_key
from audit_middleware.model.timestamps import unix_ms
from audit_middleware.query.model import AuditQuery, Cursor, Page, QueryError, check_tenant
from audit_middleware.query.store import AuditStore
from audit_middleware.sqlite.connection import ConnectionPool
from audit_middleware.sqlite.schema import USER_SEQS, SQLiteStoreError

__all__ = ["SQLiteStore", "SQLiteStoreError", "fts_match"]

_READ_BATCH = 1000  # rows per statement when iterating or tailing
_PURGE_CHUNK = 5000  # rows deleted per transaction, so writers are never held up for long


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


def _ms(moment: datetime) -> int:
    try:
        return unix_ms(moment)
    except ValueError as exc:
        raise QueryError(str(exc)) from None


def _project_clause(projects: tuple[ProjectSelector, ...]) -> tuple[str, ...]:
    """A clause (then its values) matching any of ``projects`` (by stored key); ``NO_PROJECT``: none."""
    named = [scope_key(project) for project in projects if not isinstance(project, NoProject)]
    parts = [f"project IN ({', '.join('?' * len(named))})"] if named else []
    if len(named) != len(projects):
        parts.append("project IS NULL")
    return (parts[0] if len(parts) == 1 else f"({' OR '.join(parts)})", *named)


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
        tenant = tenant_key(query.tenant)
        where = cls(["tenant = ?"], [tenant])
        for column, values in (("action", query.actions), ("resource_type", query.resource_types)):
            if values:
                where.add(f"{column} IN ({', '.join('?' * len(values))})", *values)
        if query.user:
            where.add(f"+seq IN ({USER_SEQS})", *[value for _ in range(4) for value in (tenant, query.user)])
        if query.project:
            where.add(*_project_clause((query.project,)))
        if query.projects is not None:
            if not query.projects:
                return None  # an empty allow-list permits nothing
            where.add(*_project_clause(query.projects))
        if query.exclude_actions:
            where.add(
                f"action NOT IN ({', '.join('?' * len(query.exclude_actions))})", *query.exclude_actions
            )
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


class SQLiteStore(AuditStore):
    """Audit records in a SQLite file, searchable like the OpenSearch store.

    ``busy_timeout`` is how long a statement waits for a writer's lock (reads in WAL
    mode wait only for a purge or a schema change).

    >>> store = SQLiteStore("audit.sqlite3")  # doctest: +SKIP
    >>> store.search(AuditQuery.build("acme", since="7d", search="web")).events  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self._pool = ConnectionPool(path, busy_timeout=busy_timeout, synchronous="NORMAL")
        self.path = self._pool.path

    def close(self) -> None:
        """Close idle connections (later reads open new ones)."""
        self._pool.close(optimize=True)

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------

    def _documents(self, sql: str, params: Sequence[Any]) -> list[AuditEvent]:
        with self._pool.borrow() as conn:
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

    def get(self, tenant: TenantSelector, event_id: str) -> AuditEvent | None:
        """The event ``event_id`` of ``tenant``; None when absent or another tenant's."""
        key = tenant_key(check_tenant(tenant))
        if not isinstance(event_id, str) or not event_id:
            return None
        found = self._documents(
            "SELECT document FROM events WHERE tenant = ? AND event_id = ?", [key, event_id]
        )
        return found[0] if found else None

    def count(self, query: AuditQuery) -> int:
        """How many events match (page size and cursor are ignored)."""
        where = _Filter.of(query)
        if where is None:
            return 0
        with self._pool.borrow() as conn:
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
        with self._pool.borrow() as conn:
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
        since_ms = None if since is None else _ms(since)
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
            with self._pool.borrow() as conn:
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
        cutoff_ms = _ms(cutoff)
        deleted = 0
        with self._pool.borrow() as conn:
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
