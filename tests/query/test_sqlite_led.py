"""A first page led by a big full-text set (``query.sqlite_led``) answers as the walk does."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from audit_middleware.model.event import Actor, AuditEvent, Resource
from audit_middleware.query import sqlite_led
from audit_middleware.query import sqlite_store as sqlite_store_module
from audit_middleware.query.model import AuditQuery
from audit_middleware.query.sqlite_store import SQLiteStore, _Filter, drive_limit
from audit_middleware.sinks.sqlite import SQLiteSink
from tests.query.conftest import DAY, MINUTE, NOW, make_event

BUSY = Actor(id="busy", email="busy@example.com")
CASES = [
    {"search": "web"},
    {"user": "busy"},
    {"user": "Busy@Example.com", "action": "delete", "since": "7d"},
    {"search": "web", "resource_type": "pod"},
]


def _events() -> list[AuditEvent]:
    """1,500 records, two tenants; most of acme's are the busy user's or name a ``web-`` pod."""
    events = []
    for n in range(1500):
        tenant = "acme" if n % 5 else "other"
        user = BUSY if n % 3 else Actor(id=f"u{n % 40}", email=f"user{n % 40}@example.com")
        kind = "pod" if n % 2 else "virtual_machine"
        name = f"web-{n}" if n % 4 else f"db-{n}"
        action = ("create", "delete", "update")[n % 3]
        events.append(
            make_event(
                action,
                tenant=tenant,
                ago_ms=n * 11 * MINUTE,
                user=user,
                resource=Resource(kind, str(n), name),
            )
        )
    return events


def _stored_out_of_order(sink: SQLiteSink, events: list[AuditEvent]) -> None:
    """Oldest first, as rows arrive, except 60 of the newest, stored before everything else:
    records that are newer than the rows stored after them (another process, an import)."""
    oldest_first = sorted(events, key=lambda event: event.unix_ms)
    late = oldest_first[-200::3]
    sink.write(late)
    sink.write(event for event in oldest_first if event not in late)


def _walked(conn: sqlite3.Connection, query: AuditQuery) -> list[str]:
    """The ids the usual plan (the time index walked, every set tested) gives for ``query``."""
    where = _Filter.of(query, conn)
    assert where is not None
    sql, params = where.select("event_id")
    ordered = f"{sql} ORDER BY unix_ms DESC, event_id DESC LIMIT ?"
    return [row[0] for row in conn.execute(ordered, [*params, query.page_size + 1])]


def _led(conn: sqlite3.Connection, query: AuditQuery) -> list[int] | None:
    where = _Filter.of(query, conn, drive=drive_limit(conn, query), lead=True)
    assert where is not None
    assert where.lead is not None, "the set is too big to drive: it leads"
    return sqlite_led.led_first_page(conn, where.lead, where.sql, where.params, query.page_size + 1)


@pytest.mark.parametrize("page_size", [1, 10, 50])
@pytest.mark.parametrize("filters", CASES, ids="+".join)
def test_a_led_first_page_is_the_walks_first_page(
    sqlite_store: SQLiteStore, sqlite_sink: SQLiteSink, filters: dict[str, Any], page_size: int
) -> None:
    """Late rows (stored before older ones) included, other tenants' rows left out."""
    _stored_out_of_order(sqlite_sink, _events())
    conn = sqlite3.connect(sqlite_store.path)
    query = AuditQuery.build("acme", page_size=page_size, now=NOW, **filters)
    assert _led(conn, query) is not None, "the plan did not give up"
    expected = _walked(conn, query)
    page = sqlite_store.search(query)
    assert [event.id for event in page.events] == expected[:page_size]
    assert (page.next_cursor is not None) == (len(expected) > page_size)


def test_the_late_rows_are_what_the_set_alone_would_miss(
    sqlite_store: SQLiteStore, sqlite_sink: SQLiteSink
) -> None:
    """Without the second look (no late rows allowed for), the newest page would lack them."""
    _stored_out_of_order(sqlite_sink, _events())
    conn = sqlite3.connect(sqlite_store.path)
    query = AuditQuery.build("acme", page_size=10, now=NOW, search="web")
    where = _Filter.of(query, conn, drive=drive_limit(conn, query), lead=True)
    assert where is not None
    assert where.lead is not None
    newest_stored = [
        row[0]
        for row in conn.execute(
            "SELECT seq FROM events WHERE seq IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?) "
            f"AND {where.sql} ORDER BY seq DESC LIMIT 11",
            [where.lead, *where.params],
        )
    ]
    led = _led(conn, query)
    assert led is not None
    assert led != newest_stored, "the data holds late rows the page must include"


@pytest.mark.parametrize("setting", [("LEAD_BUDGET", 8), ("_LATE_LIMIT", 2)])
def test_a_lead_that_gives_up_leaves_the_answer_to_the_walk(
    sqlite_store: SQLiteStore,
    sqlite_sink: SQLiteSink,
    monkeypatch: pytest.MonkeyPatch,
    setting: tuple[str, int],
) -> None:
    """Out of budget, or too many late rows: None, and the search answers all the same."""
    _stored_out_of_order(sqlite_sink, _events())
    monkeypatch.setattr(sqlite_led, *setting)
    conn = sqlite3.connect(sqlite_store.path)
    query = AuditQuery.build("acme", page_size=50, now=NOW, search="web")
    assert _led(conn, query) is None
    assert [event.id for event in sqlite_store.search(query).events] == _walked(conn, query)[:50]


def test_a_rare_tenant_in_a_big_set_gives_up_early(
    sqlite_store: SQLiteStore, sqlite_sink: SQLiteSink
) -> None:
    """A tenant with one row in a hundred of the set: the lead stops after a few hundred set
    rows (not its whole budget) and the walk answers."""
    sqlite_sink.write(
        make_event(tenant="acme" if n % 100 == 0 else "other", ago_ms=n * MINUTE, user=BUSY)
        for n in range(6000)
    )
    conn = sqlite3.connect(sqlite_store.path)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    query = AuditQuery.build("acme", page_size=50, now=NOW, user="busy")
    assert _led(conn, query) is None
    chunks = [sql for sql in statements if "ORDER BY rowid DESC" in sql]
    assert len(chunks) == 2, "64 rows, then 256, then it gives up"
    assert [event.id for event in sqlite_store.search(query).events] == _walked(conn, query)[:50]


def test_a_set_read_to_its_end_needs_no_second_look(
    sqlite_store: SQLiteStore, sqlite_sink: SQLiteSink
) -> None:
    """Fewer matches than a page in a big set (the set is mostly another tenant's): all of them."""
    sqlite_sink.write(make_event(tenant="other", ago_ms=n * MINUTE, user=BUSY) for n in range(600))
    sqlite_sink.write(make_event(tenant="acme", ago_ms=n * DAY, user=BUSY) for n in range(3))
    conn = sqlite3.connect(sqlite_store.path)
    query = AuditQuery.build("acme", page_size=50, now=NOW, user="busy")
    led = _led(conn, query)
    assert led is not None
    assert len(led) == 3
    assert [event.id for event in sqlite_store.search(query).events] == _walked(conn, query)


def test_a_file_of_one_tenant_counts_a_user_from_the_set_alone(
    sqlite_store: SQLiteStore, sqlite_sink: SQLiteSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exact and bounded counts of a big user set agree with the walk, before and after a
    second tenant's record makes the file shared (and the row reads necessary again)."""
    # a set of 600 is too big to drive a count when the drive limit is 200 (10,000 in use)
    monkeypatch.setattr(sqlite_store_module, "BOUNDED_COUNT_LIMIT", 200)
    sqlite_sink.write(make_event(ago_ms=n * MINUTE, user=BUSY if n % 3 else None) for n in range(900))
    conn = sqlite3.connect(sqlite_store.path)
    query = AuditQuery.build("acme", user="busy@example.com")
    where = _Filter.of(query, conn, drive=200, lead=True)
    assert where is not None
    assert where.lead is not None
    assert sqlite_led.single_tenant(conn, "acme")
    assert sqlite_store.count(query) == 600
    assert (sqlite_store.count_bounded(query, 100).value, sqlite_store.count_bounded(query, 100).more) == (
        100,
        True,
    )
    assert str(sqlite_store.count_bounded(query, 600)) == "600"
    sqlite_sink.write([make_event(tenant="other", user=BUSY)])
    assert not sqlite_led.single_tenant(conn, "acme")
    assert not sqlite_led.single_tenant(conn, "other")
    assert sqlite_store.count(query) == 600
    assert sqlite_store.count(AuditQuery.build("other", user="busy")) == 1
