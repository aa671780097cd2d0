"""``SQLiteStore``: finding audit records in the embedded SQLite store (the read side).

The file's layout is in ``audit_middleware.sqlite.schema``; ``sinks.sqlite.SQLiteSink``
writes it. The database runs in WAL mode, so reads never wait for the writer.

Free text never reaches FTS5 as syntax: ``fts_match`` keeps only the characters the
tokenizer indexes (letters, digits, marks), so each whitespace-separated word becomes a
quoted phrase with a trailing ``*`` and the phrases are ANDed. ``OR``, ``NEAR``, ``*``,
quotes, ``:``, parentheses and NUL are separators, just as they are in the index.

This module is long because the filter translation (the covering index, the user and text
sets through FTS5, the choice between walking and driving) and the reads built on it
(pages, bounded and exact counts, stored documents, tail) share one ``_Filter``.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from audit_middleware.model.chain import link_line
from audit_middleware.model.encoding import dumps, loads
from audit_middleware.model.event import AuditEvent
from audit_middleware.model.tenancy import NoProject, ProjectSelector, TenantSelector, scope_key, tenant_key
from audit_middleware.model.timestamps import unix_ms
from audit_middleware.query.export import stored_document_chunks
from audit_middleware.query.model import (
    BOUNDED_COUNT_LIMIT,
    AuditQuery,
    BoundedCount,
    Cursor,
    Page,
    QueryError,
    check_tenant,
)
from audit_middleware.query.sqlite_led import led_first_page, single_tenant
from audit_middleware.query.store import AuditStore
from audit_middleware.sqlite.chains import iter_checkpoints
from audit_middleware.sqlite.connection import ConnectionPool
from audit_middleware.sqlite.schema import TENANT_KEYS, TEXT_COLUMNS, SQLiteStoreError, email_key, id_key

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


def _fold(text: str) -> str:
    """Case and diacritics folded as the ``unicode61 remove_diacritics 2`` tokenizer does."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _tokens(text: str) -> list[str]:
    """The tokens the index holds for ``text`` (folded, split at every non-token character)."""
    return "".join(char if _is_token_char(char) else " " for char in _fold(text)).split()


def fts_phrases(text: str) -> list[list[str]]:
    """The phrases of free text: each whitespace-separated word cut into index tokens.

    Words without a letter or digit are left out, and so are repeats.

    >>> fts_phrases('Prod "db*" OR ann@ex prod')
    [['prod'], ['db'], ['or'], ['ann', 'ex']]
    """
    phrases: dict[tuple[str, ...], None] = {}
    for word in text.split():
        kept = [token for token in _tokens(word) if any(unicodedata.category(c)[0] in "LN" for c in token)]
        if kept:
            phrases[tuple(kept)] = None
    return [list(phrase) for phrase in phrases]


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
    phrases = [_fts_string(" ".join(tokens)) + "*" for tokens in fts_phrases(text)]
    return " AND ".join(phrases) if phrases else None


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
    """The SQL ``WHERE`` of a query: clauses with ``?`` placeholders and their values.

    ``driving`` holds the candidate rows (``seq``) when a full-text term of the query has
    few matches (``drive_limit``, in any tenant): the query then reads those rows by
    rowid and sorts them, instead of walking the tenant's time index. ``lead`` holds the
    query's one full-text set when it is too big to drive and was asked for as a lead
    (``query.sqlite_led``): the clauses then leave it out (``tested()`` puts it back).
    """

    __slots__ = ("clauses", "driving", "either", "lead", "params")

    def __init__(self, clauses: list[str], params: list[Any], driving: list[int] | None = None) -> None:
        self.clauses = clauses
        self.params = params
        self.driving = driving
        self.lead: str | None = None
        self.either = False  # a text word may match a stored action instead of the full-text set

    @classmethod
    def of(
        cls, query: AuditQuery, conn: sqlite3.Connection, *, drive: int | None = None, lead: bool = False
    ) -> _Filter | None:
        """The filter of ``query`` (its cursor aside), or None when nothing can match.

        Every filter but the user and the text is tested on ``events_by_time`` entries
        (they are covering). The user filter is one ``user_keys`` term lookup; each word
        of the text is an FTS phrase over the resource name and emails, or a stored
        action whose id or label it matches. Those sets of ``seq`` are tested per entry
        (the ``+`` keeps SQLite from driving by them and sorting every match), unless one
        of them is small: then it drives (see the class docstring). With ``lead``, a single
        set that does not drive becomes ``lead`` instead of a clause.
        """
        tenant = tenant_key(query.tenant)
        where = cls(["tenant = ?"], [tenant])
        for column, values in (("action", query.actions), ("resource_type", query.resource_types)):
            if values:
                where.add(f"{column} IN ({', '.join('?' * len(values))})", *values)
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
        required: list[str] = []  # FTS expressions every match is in
        if query.user:
            required.append(f'user_keys : ("{id_key(query.user)}" OR "{email_key(query.user)}")')
        if query.text and not where.add_text(query.text, conn, required):
            return None
        return where.drive_or_test(required, conn, drive, lead=lead)

    def add_text(self, text: str, conn: sqlite3.Connection, required: list[str]) -> bool:
        """Add the clauses of free ``text``; False when it has nothing to look for.

        A word that names no stored action must be in the full-text index: it joins
        ``required``. One that does may match either way: an ``OR`` clause.
        """
        phrases = fts_phrases(text)
        if not phrases:
            return False
        words: list[str] = []
        actions = _stored_actions(conn)
        for tokens in phrases:
            phrase = _fts_string(" ".join(tokens)) + "*"
            named = [action for action, names in actions if any(_has_phrase(n, tokens) for n in names)]
            if not named:
                words.append(phrase)
                continue
            self.either = True
            self.add(
                f"(action IN ({', '.join('?' * len(named))}) OR +seq IN ({_FTS_SEQS}))",
                *named,
                f"{TEXT_COLUMNS} : {phrase}",
            )
        if words:
            required.append(f"{TEXT_COLUMNS} : ({' AND '.join(words)})")
        return True

    def drive_or_test(
        self, required: list[str], conn: sqlite3.Connection, drive: int | None, *, lead: bool = False
    ) -> _Filter:
        """Let the smallest ``required`` FTS set drive when it has at most ``drive`` rows; test the others.

        With ``lead``, one set that does not drive, and no text word that may be an action
        instead, the set is kept as ``lead`` rather than tested.
        """
        smallest: tuple[int, list[int]] | None = None
        limit = drive or 0
        for number, match in enumerate(required if limit else ()):
            seqs = _small_set(conn, match, limit)
            if seqs is not None and (smallest is None or len(seqs) < len(smallest[1])):
                smallest = (number, seqs)
        if smallest is not None:
            self.driving = smallest[1]
        elif lead and len(required) == 1 and not self.either:
            self.lead = required[0]
            return self
        for number, match in enumerate(required):
            if smallest is None or number != smallest[0]:
                self.add(f"+seq IN ({_FTS_SEQS})", match)
        return self

    def tested(self) -> _Filter:
        """This filter with its ``lead`` set (if any) tested per entry, as a filter without a lead."""
        if self.lead is None:
            return self
        copy = self.copy().add(f"+seq IN ({_FTS_SEQS})", self.lead)
        copy.lead = None
        return copy

    def add(self, clause: str, *params: Any) -> _Filter:
        """Add one clause (ANDed) and its values; returns self."""
        self.clauses.append(clause)
        self.params.extend(params)
        return self

    def copy(self) -> _Filter:
        """An independent copy, to add clauses to."""
        return _Filter(list(self.clauses), list(self.params), self.driving)

    def before(self, cursor: Cursor | None) -> _Filter:
        """A copy that also requires rows older than ``cursor`` (newest-first keyset)."""
        copy = self.copy()
        if cursor is not None:
            copy.add("(unix_ms, event_id) < (?, ?)", cursor.unix_ms, cursor.event_id)
        return copy

    def select(self, columns: str) -> tuple[str, list[Any]]:
        """``SELECT columns FROM events WHERE ...`` and its values (rowid lookups when driving)."""
        if self.driving is None:
            return f"SELECT {columns} FROM events WHERE {self.sql}", list(self.params)  # noqa: S608 - only placeholders are interpolated
        return (
            f"SELECT {columns} FROM events NOT INDEXED "  # noqa: S608 - only placeholders are interpolated
            f"WHERE seq IN (SELECT value FROM json_each(?)) AND {self.sql}",
            [json.dumps(self.driving), *self.params],
        )

    @property
    def sql(self) -> str:
        """The clauses joined with AND."""
        return " AND ".join(self.clauses)


_FTS_SEQS = "SELECT rowid FROM events_fts WHERE events_fts MATCH ?"
_FTS_PROBE = _FTS_SEQS + " LIMIT ?"


def drive_limit(conn: sqlite3.Connection, query: AuditQuery) -> int:
    """How many full-text matches (all tenants) may drive a first page rather than the time index.

    Driving costs a row read per match (random pages, cold after a restart); walking
    ``events_by_time`` costs about ``page_size / share`` entries, read in order, where
    ``share`` (matches / rows) is about ``matches / total``. With an entry ~100x cheaper
    than a driven row (measured), driving wins below ``sqrt(page_size * total / 100)``:
    about 700 matches at 1M records, 1,200 at 3M. Another filter that keeps few rows (a
    date range, an action, a type, an outcome, a project) makes the walk's share smaller
    still, so the limit is 8x higher then; ``exclude_actions`` (which the viewer always
    sets, and which keeps nearly every row) does not count.
    """
    total = _max_seq(conn)
    limit = max(50, min(5_000, math.isqrt((query.page_size + 1) * total // 100)))
    narrowed = (
        query.actions
        or query.resource_types
        or query.outcome
        or query.project
        or query.projects is not None
        or query.start is not None
        or query.end is not None
        or (query.user and query.text)
    )
    return min(BOUNDED_COUNT_LIMIT, limit * 8) if narrowed else limit


def _by_full_text(where: _Filter, sql: str) -> str:
    """A bounded count's statement read along its first full-text set, when it has one.

    A count that stops at ``limit`` reads that set's rows by rowid until ``limit`` of
    them match (about ``limit / share of the tenant`` reads), where walking the tenant's
    index would read every entry up to the ``limit``-th match of a scattered set.
    """
    if where.driving is not None or "+seq IN (" not in sql:
        return sql
    return sql.replace(" FROM events WHERE ", " FROM events NOT INDEXED WHERE ", 1).replace(
        "+seq IN (", "seq IN (", 1
    )


def _small_set(conn: sqlite3.Connection, match: str, limit: int) -> list[int] | None:
    """The rows of the full-text set ``match`` if it has at most ``limit``, else None.

    SQLite hands the rowids over as one JSON array: three times cheaper than a Python
    row per rowid (10,000 of them: 2.3 against 6.5 ms).
    """
    probe = f"SELECT json_group_array(rowid) FROM ({_FTS_PROBE})"  # noqa: S608 - a constant
    text = conn.execute(probe, (match, limit + 1)).fetchone()[0]
    seqs: list[int] = loads(text)
    return seqs if len(seqs) <= limit else None


def _set_size(conn: sqlite3.Connection, match: str, limit: int | None) -> int:
    """How many rows the full-text set ``match`` holds (at most ``limit``)."""
    if limit is None:
        return int(conn.execute(f"SELECT count(*) FROM ({_FTS_SEQS})", [match]).fetchone()[0])  # noqa: S608 - a constant
    return int(conn.execute(f"SELECT count(*) FROM ({_FTS_PROBE})", [match, limit]).fetchone()[0])  # noqa: S608 - a constant


def _max_seq(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])


def _stored_actions(conn: sqlite3.Connection) -> list[tuple[str, tuple[list[str], ...]]]:
    """Every stored action id with the tokens of its id and of each of its labels."""
    names: dict[str, list[list[str]]] = {}
    for action, label in conn.execute("SELECT id, label FROM actions"):
        entry = names.setdefault(str(action), [_tokens(str(action))])
        entry.append(_tokens(str(label)))
    return [(action, tuple(tokens)) for action, tokens in names.items()]


def _has_phrase(tokens: list[str], phrase: list[str]) -> bool:
    """Whether ``phrase`` occurs in ``tokens`` as FTS5 matches ``"a b"*``: in a row, the last by prefix."""
    size = len(phrase)
    for start in range(len(tokens) - size + 1):
        window = tokens[start : start + size]
        if window[:-1] == phrase[:-1] and window[-1].startswith(phrase[-1]):
            return True
    return False


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

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one read transaction: the probes and the query see the same rows."""
        with self._pool.borrow() as conn:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    @staticmethod
    def _led(conn: sqlite3.Connection, where: _Filter, wanted: int) -> list[Any] | None:
        """The first page's documents through ``query.sqlite_led``, or None when it gives up."""
        assert where.lead is not None
        seqs = led_first_page(conn, where.lead, where.sql, where.params, wanted)
        if seqs is None:
            return None
        documents = dict(
            conn.execute(
                "SELECT seq, document FROM events WHERE seq IN (SELECT value FROM json_each(?))",
                [json.dumps(seqs)],
            ).fetchall()
        )
        return [(documents[seq],) for seq in seqs]

    @staticmethod
    def _newest_first(
        conn: sqlite3.Connection, where: _Filter, limit: int, columns: str = "document"
    ) -> list[Any]:
        sql, params = where.select(columns)
        return conn.execute(
            f"{sql} ORDER BY unix_ms DESC, event_id DESC LIMIT ?", [*params, limit]
        ).fetchall()

    def search(self, query: AuditQuery) -> Page:
        """One page of matching events, newest first; ``next_cursor`` is None on the last page."""
        with self._snapshot() as conn:
            # a first page may be led by a big full-text set, read newest rows first
            where = _Filter.of(query, conn, drive=drive_limit(conn, query), lead=query.cursor is None)
            if where is None:
                return Page(events=[], next_cursor=None)
            rows = self._led(conn, where, query.page_size + 1) if where.lead is not None else None
            if rows is None:  # no lead, or it gave up: walk the time index
                rows = self._newest_first(conn, where.tested().before(query.cursor), query.page_size + 1)
        events = [AuditEvent.from_document(loads(row[0])) for row in rows]
        page = events[: query.page_size]
        more = len(events) > query.page_size
        return Page(events=page, next_cursor=Cursor.after(page[-1]).encode() if more else None)

    def get(self, tenant: TenantSelector, event_id: str) -> AuditEvent | None:
        """The event ``event_id`` of ``tenant``; None when absent or another tenant's."""
        key = tenant_key(check_tenant(tenant))
        if not isinstance(event_id, str) or not event_id:
            return None
        with self._pool.borrow() as conn:
            row = conn.execute(
                "SELECT document FROM events WHERE tenant = ? AND event_id = ?", [key, event_id]
            ).fetchone()
        return None if row is None else AuditEvent.from_document(loads(row[0]))

    def count(self, query: AuditQuery) -> int:
        """How many events match (page size and cursor are ignored)."""
        return self._count(query, None)

    def count_bounded(self, query: AuditQuery, limit: int = BOUNDED_COUNT_LIMIT) -> BoundedCount:
        """How many events match, exactly up to ``limit``: reads at most ``limit + 1`` index entries."""
        return BoundedCount.of(self._count(query, limit + 1), limit)

    def _count(self, query: AuditQuery, limit: int | None) -> int:
        with self._snapshot() as conn:
            # a count reads every match: driving by up to 10,000 rows beats walking the tenant
            where = _Filter.of(query, conn, drive=BOUNDED_COUNT_LIMIT, lead=True)
            if where is None:
                return 0
            if (
                where.lead is not None
                and where.clauses == ["tenant = ?"]
                and single_tenant(conn, where.params[0])
            ):
                # the file holds this tenant alone: the set's size is the answer, no row read
                return _set_size(conn, where.lead, limit)
            where = where.tested()
            sql, params = where.select("1")
            if limit is not None:
                sql, params = f"{_by_full_text(where, sql)} LIMIT ?", [*params, limit]
            row = conn.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()  # noqa: S608 - only placeholders are interpolated
        return int(row[0])

    def iterate(self, query: AuditQuery) -> Iterator[AuditEvent]:
        """Every matching event, newest first, read ``1000`` at a time.

        Events stored after the iteration started are left out, so an export is the
        set of records that existed when it began.
        """
        return (AuditEvent.from_document(loads(document)) for document in self.documents(query))

    def documents(self, query: AuditQuery) -> Iterator[str]:
        """Every matching event's stored document (JSON text, as stored), in ``iterate`` order."""
        with self._pool.borrow() as conn:
            snapshot = _max_seq(conn)
            where = _Filter.of(query, conn, drive=BOUNDED_COUNT_LIMIT)
        if where is None:
            return iter(())
        return self._iterate(where.add("seq <= ?", snapshot), query.cursor)

    def chained_export_chunks(
        self, query: AuditQuery, *, progress: Callable[[int], None] | None = None
    ) -> Iterator[bytes]:
        """See ``AuditStore.chained_export_chunks``; records in the order they were stored."""
        return stored_document_chunks(self._chained_lines(query, progress), "ndjson")

    def _chained_lines(self, query: AuditQuery, progress: Callable[[int], None] | None) -> Iterator[str]:
        # One connection for the whole read: the matching rows are set aside in a temporary
        # table once, then every chained row is read in storage order beside it.
        with self._pool.borrow() as conn:
            snapshot = _max_seq(conn)
            where = _Filter.of(query, conn, drive=BOUNDED_COUNT_LIMIT)
            checkpoints = [c for c in iter_checkpoints(conn) if not isinstance(c, str)]
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS exported (seq INTEGER PRIMARY KEY)")
            conn.execute("DELETE FROM temp.exported")
            if where is not None:
                sql, params = where.add("seq <= ?", snapshot).select("seq")
                conn.execute(f"INSERT INTO temp.exported {sql}", params)
            rows = conn.execute(
                "SELECT e.document, x.seq IS NOT NULL FROM events e "
                "LEFT JOIN temp.exported x ON x.seq = e.seq "
                "WHERE e.seq <= ? AND (x.seq IS NOT NULL OR e.chain_id IS NOT NULL) ORDER BY e.seq",
                [snapshot],
            )
            exported = 0
            for text, matched in rows:
                if matched:
                    exported += 1
                    if progress is not None and exported % 1000 == 0:
                        progress(1000)
                    yield str(text)
                else:
                    yield link_line(loads(text))
            if progress is not None:
                progress(exported % 1000)
            conn.execute("DELETE FROM temp.exported")
        for checkpoint in checkpoints:
            yield dumps(checkpoint.to_json()).decode("utf-8")

    def _iterate(self, where: _Filter, cursor: Cursor | None) -> Iterator[str]:
        while True:
            with self._pool.borrow() as conn:
                batch = self._newest_first(
                    conn, where.before(cursor), _READ_BATCH, "document, unix_ms, event_id"
                )
            for row in batch:
                yield str(row[0])
            if len(batch) < _READ_BATCH:
                return
            cursor = Cursor(int(batch[-1][1]), str(batch[-1][2]))

    def _max_seq(self) -> int:
        with self._pool.borrow() as conn:
            return _max_seq(conn)

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
        with self._pool.borrow() as conn:
            where = _Filter.of(query, conn)  # never driven: new rows are not in a set found now
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
            with self._pool.borrow() as conn:
                rows = conn.execute(sql, [*page.params, _READ_BATCH]).fetchall()
            batch = [AuditEvent.from_document(loads(row[0])) for row in rows]
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
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events "  # noqa: S608 - fixed SQL
                    f"WHERE tenant IN ({TENANT_KEYS}) AND unix_ms < ? LIMIT ?)",
                    (cutoff_ms, _PURGE_CHUNK),
                ).rowcount
                conn.execute("COMMIT")
                deleted += removed
                if removed < _PURGE_CHUNK:
                    return deleted
