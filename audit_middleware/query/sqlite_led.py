"""A first page led by one full-text set, read newest row first: for sets too big to drive.

A search with a user or a text term whose full-text set is large (tens of thousands of
rows) has two plans in ``query.sqlite_store``: drive by the whole set (read every match
by rowid, then sort) or walk the tenant's time index and test each entry against the
set, which SQLite builds in full first. At 3M records both cost in proportion to the
set: building the set of ``"web fr"*`` (49,000 rows) alone took about 12 ms.

FTS5 can also hand a set over lazily, largest rowid first, and rows are stored in about
the order of their time (``seq`` grows as rows arrive). So a first page can read the set
from its newest rows, a growing chunk at a time, keep the rows that pass the other
filters, and stop once it holds a page: tens or hundreds of rows instead of the set.
Arrival order is not time order (several processes write, an import brings old
records), so before the page is trusted one more read looks for what this missed: rows
of the filter newer than the page's last entry with a rowid below the part of the set
read so far (one range of the covering time index). Those few are tested against the
set and join the candidates; anything else newer than the last entry was read already.
The answer is therefore exactly the one the other plans give. When the rows read so far
say the page would need more of the set than its budget (a small tenant's rows in a set
of all tenants), or too many such late rows turn up, the plan gives up, early, and the
caller uses the usual one.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Final

__all__ = ["LEAD_BUDGET", "led_first_page", "single_tenant"]

LEAD_BUDGET: Final = 4096  # set rows read before the plan gives up (about 4-15 ms of reads)
_FIRST_CHUNK: Final = 64
_LATE_LIMIT: Final = 1024  # late rows (newer, stored earlier) tested before giving up

# A chunk of the set as SQLite hands it to the next statement: a JSON array, its size, its last rowid.
_SET_CHUNK = (
    "SELECT json_group_array(rowid), count(*), min(rowid) FROM ("
    "SELECT rowid FROM events_fts WHERE events_fts MATCH ? AND rowid < ? ORDER BY rowid DESC LIMIT ?)"
)
_IN_SET = (
    "SELECT rowid FROM events_fts WHERE events_fts MATCH ? AND rowid IN (SELECT value FROM json_each(?))"
)

Key = tuple[int, str, int]  # (unix_ms, event_id, seq): the page order, then the row


def led_first_page(
    conn: sqlite3.Connection, match: str, where: str, params: list[Any], wanted: int
) -> list[int] | None:
    """The ``seq`` of the first ``wanted`` rows, newest first (``unix_ms``, ``event_id``
    descending), of the rows in the full-text set ``match`` that pass ``where``
    (``params``); None when the plan gives up (see the module docstring).
    """
    rows_sql = (
        "SELECT unix_ms, event_id, seq FROM events NOT INDEXED "  # noqa: S608 - only placeholders are interpolated
        f"WHERE seq IN (SELECT value FROM json_each(?)) AND {where}"
    )
    found: list[Key] = []
    below = 1 << 62  # every rowid is smaller
    read = 0
    chunk = min(_FIRST_CHUNK, LEAD_BUDGET)
    while len(found) < wanted:
        if read >= LEAD_BUDGET:
            return None
        seqs, size, smallest = conn.execute(_SET_CHUNK, (match, below, chunk)).fetchone()
        read += size
        if size:
            below = smallest
            found.extend(conn.execute(rows_sql, [seqs, *params]))
        if size < chunk:  # the whole set is read: every match is in hand
            return [seq for *_, seq in sorted(found, reverse=True)[:wanted]]
        # the next chunk from the share of rows that passed so far (a quarter more), else 4x
        guess = (wanted - len(found)) * read * 5 // (4 * len(found)) + 16 if found else chunk * 4
        if read + guess > LEAD_BUDGET if found else read >= 4 * _FIRST_CHUNK:
            return None  # a rare match (a small tenant in a big set): the walk does better, give up early
        chunk = max(1, min(max(guess, _FIRST_CHUNK), LEAD_BUDGET - read))
    found.sort(reverse=True)
    last_ms, last_id, _ = found[wanted - 1]
    # The page's own bound first: SQLite ranges the time index by the first lower bound it
    # meets, and the query's (a date filter) may lie days further back (measured 6 against 70 ms).
    late = conn.execute(
        "SELECT unix_ms, event_id, seq FROM events "  # noqa: S608 - only placeholders are interpolated
        f"WHERE unix_ms >= ? AND {where} AND (unix_ms, event_id) > (?, ?) AND +seq < ? LIMIT ?",
        [last_ms, *params, last_ms, last_id, below, _LATE_LIMIT + 1],
    ).fetchall()
    if len(late) > _LATE_LIMIT:
        return None
    if late:
        in_set = {int(row[0]) for row in conn.execute(_IN_SET, (match, json.dumps([r[2] for r in late])))}
        found.extend(row for row in late if row[2] in in_set)
        found.sort(reverse=True)
    return [seq for *_, seq in found[:wanted]]


def single_tenant(conn: sqlite3.Connection, tenant: str) -> bool:
    """Whether every stored row belongs to ``tenant`` (two seeks of the time index)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM events WHERE tenant < ?) "
        "OR EXISTS (SELECT 1 FROM events WHERE tenant > ?)",
        (tenant, tenant),
    ).fetchone()
    return not row[0]
