"""The ``AuditStore`` contract, run against every store (see ``conftest.HARNESSES``)."""

from __future__ import annotations

import csv
import io
import json
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from audit_middleware.model.event import NO_TENANT, Actor, AuditEvent, ChangeSet, RequestFacts, Resource
from audit_middleware.model.tenancy import NO_PROJECT
from audit_middleware.query.model import AuditQuery, BoundedCount, Cursor, QueryError
from audit_middleware.query.store import AuditStore
from tests.query.conftest import DAY, HOUR, MINUTE, NOW, NOW_MS, make_event

Loader = Callable[[Sequence[AuditEvent]], AuditStore]

ANN = Actor(id="u1", email="ann@example.com")
BOB = Actor(id="u2", email="bob@example.com")
CAROL = Actor(id="u3", email="Carol@Example.ORG")
DAVE = Actor(id="u5", email="dave@example.com")
ERIN_AS_SUPPORT = Actor(
    id="u4", email="erin@example.com", impersonator=Actor(id="u9", email="support@example.com")
)


ALL = ["create", "update", "login_failed", "impersonated", "token", "delete", "start", "stop", "restart"]


@dataclass
class Dataset:
    """The events of tenant ``acme`` by name, and of ``globex`` (same names, other ids)."""

    acme: dict[str, AuditEvent]
    globex: dict[str, AuditEvent]

    def ids(self, *names: str) -> set[str]:
        """The acme event ids of ``names``."""
        return {self.acme[name].id for name in names}


def _events(tenant: str) -> dict[str, AuditEvent]:
    return {
        "create": make_event(
            "create",
            tenant=tenant,
            ago_ms=1 * HOUR,
            user=ANN,
            resource=Resource("pod", "p-1", "Prod Database"),
            project="p1",
        ),
        "update": make_event(
            "update",
            tenant=tenant,
            ago_ms=2 * HOUR,
            user=BOB,
            resource=Resource("virtual_machine", "vm-1", "web-frontend"),
            changes=ChangeSet({"cpus": 2}, {"cpus": 4}, ("cpus",)),
            request=RequestFacts(method="PATCH", path="/vms/vm-1", status_code=200, client_ip="10.0.0.2"),
        ),
        "login_failed": make_event("login_failed", tenant=tenant, ago_ms=5 * HOUR, user=DAVE),
        "impersonated": make_event(
            "update", tenant=tenant, ago_ms=6 * HOUR, user=ERIN_AS_SUPPORT, resource=Resource("project", "p2")
        ),
        "token": make_event(
            "token_created",
            tenant=tenant,
            ago_ms=12 * HOUR,
            user=ANN,
            resource=Resource("api_token", "t1", "ci"),
        ),
        "delete": make_event(
            "delete",
            tenant=tenant,
            ago_ms=3 * DAY,
            user=ANN,
            resource=Resource("storage", "s-1", "Backup Volume"),
            project="p2",
        ),
        "start": make_event(
            "start", tenant=tenant, ago_ms=10 * DAY, user=BOB, resource=Resource("pod", "p-2", "web-1")
        ),
        "stop": make_event(
            "stop", tenant=tenant, ago_ms=20 * DAY, user=ANN, resource=Resource("pod", "p-3", "web-2")
        ),
        "restart": make_event(
            "restart",
            tenant=tenant,
            ago_ms=40 * DAY,
            user=CAROL,
            resource=Resource("virtual_machine", "vm-2", "Cache Server"),
        ),
    }


@pytest.fixture
def data(loaded_store: Loader) -> Dataset:
    """Two tenants with identical resource names, users and actions, loaded into the store."""
    dataset = Dataset(acme=_events("acme"), globex=_events("globex"))
    loaded_store([*dataset.acme.values(), *dataset.globex.values()])
    return dataset


def _query(**filters: object) -> AuditQuery:
    filters.setdefault("page_size", 100)
    return AuditQuery.build(filters.pop("tenant", "acme"), now=NOW, **filters)  # type: ignore[arg-type]


def _found(store: AuditStore, **filters: object) -> set[str]:
    """The ids of one (large) page of matches, after checking count agrees."""
    query = _query(**filters)
    ids = [event.id for event in store.search(query).events]
    assert store.count(query) == len(ids)
    return set(ids)


# -- filters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param({"action": "delete"}, ["delete"], id="action"),
        pytest.param({"action": ["create", "delete"]}, ["create", "delete"], id="several-actions"),
        pytest.param({"action": "start-stop"}, ["start", "stop", "restart"], id="group-start-stop"),
        pytest.param({"action": "Login Failed"}, ["login_failed"], id="action-label"),
        pytest.param({"action": "all"}, ALL, id="all-actions"),
        pytest.param({"resource_type": "virtual_machine"}, ["update", "restart"], id="resource-type"),
        pytest.param({"resource_type": "pod,storage"}, ["create", "start", "stop", "delete"], id="two-types"),
        pytest.param({"user": "u1"}, ["create", "token", "delete", "stop"], id="user-id"),
        pytest.param({"user": "ANN@Example.com"}, ["create", "token", "delete", "stop"], id="email-any-case"),
        pytest.param({"user": "erin@example.com"}, ["impersonated"], id="identity-acted-as"),
        pytest.param({"user": "support@example.com"}, ["impersonated"], id="impersonator"),
        pytest.param({"user": "nobody@example.com"}, [], id="unknown-user"),
        pytest.param({"project": "p2"}, ["delete"], id="project"),
        pytest.param({"outcome": "failure"}, ["login_failed"], id="outcome"),
        pytest.param({"projects": ["p1", "p2"]}, ["create", "delete"], id="project-allow-list"),
        pytest.param({"projects": ["p2", "elsewhere"]}, ["delete"], id="allow-list-with-unknown"),
        pytest.param({"projects": []}, [], id="empty-allow-list-permits-nothing"),
        pytest.param(
            {"projects": [NO_PROJECT]},
            [name for name in ALL if name not in ("create", "delete")],
            id="allow-list-of-records-without-project",
        ),
        pytest.param(
            {"projects": ["p1", NO_PROJECT]}, [name for name in ALL if name != "delete"], id="p1-or-none"
        ),
        pytest.param({"project": "p2", "projects": ["p1", "p2"]}, ["delete"], id="project-narrows-list"),
        pytest.param({"project": "p1", "projects": ["p2"]}, [], id="project-cannot-widen-list"),
        pytest.param(
            {"project": NO_PROJECT},
            [name for name in ALL if name not in ("create", "delete")],
            id="no-project",
        ),
        pytest.param(
            {"exclude_actions": ["update", "token_created"]},
            [name for name in ALL if name not in ("update", "impersonated", "token")],
            id="exclude-actions",
        ),
        pytest.param(
            {"action": ["update", "delete"], "exclude_actions": ["update"]}, ["delete"], id="exclude-wins"
        ),
        pytest.param(
            {"since": "24h"}, ["create", "update", "login_failed", "impersonated", "token"], id="24h"
        ),
        pytest.param(
            {"since": "7d"}, ["create", "update", "login_failed", "impersonated", "token", "delete"], id="7d"
        ),
        pytest.param({"since": "30d"}, [name for name in ALL if name != "restart"], id="30d"),
        pytest.param(
            {"user": "u1", "action": ["create", "delete", "stop"], "since": "7d"},
            ["create", "delete"],
            id="combined",
        ),
        pytest.param(
            {"resource_type": "pod", "action": "start-stop", "project": "p1"}, [], id="combined-nothing"
        ),
    ],
)
def test_filters(store: AuditStore, data: Dataset, filters: dict[str, object], expected: list[str]) -> None:
    """Each filter, and filters combined (ANDed), select exactly the expected events."""
    assert set(data.acme) == set(ALL)
    assert _found(store, **filters) == data.ids(*expected)


def test_custom_range_in_a_timezone(store: AuditStore, data: Dataset) -> None:
    """--from/--to without an offset are read in the given zone; from is inclusive, to exclusive."""
    berlin = ZoneInfo("Europe/Berlin")
    moment = data.acme["delete"].timestamp.astimezone(berlin).replace(tzinfo=None)
    fmt = "%Y-%m-%dT%H:%M:%S.%f"
    around = {
        "start": (moment - timedelta(minutes=1)).strftime(fmt),
        "end": (moment + timedelta(minutes=1)).strftime(fmt),
    }
    assert _found(store, timezone_name="Europe/Berlin", **around) == data.ids("delete")
    # the same wall-clock times read as UTC miss it (Berlin is 1-2 hours ahead of UTC)
    assert data.ids("delete").isdisjoint(_found(store, **around))
    assert _found(store, timezone_name="Europe/Berlin", start=moment.strftime(fmt)) >= data.ids("delete")
    assert data.ids("delete").isdisjoint(
        _found(store, timezone_name="Europe/Berlin", end=moment.strftime(fmt))
    )


def test_range_with_offsets_and_z(store: AuditStore, data: Dataset) -> None:
    """Explicit offsets and a trailing Z are honoured whatever --timezone says."""
    moment = data.acme["update"].timestamp
    start = (moment - timedelta(seconds=1)).astimezone(timezone(timedelta(hours=-5))).isoformat()
    end = (moment + timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    assert _found(store, start=start, end=end, timezone_name="Asia/Tokyo") == data.ids("update")


# -- free text -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("prod", ["create"], id="resource-name-prefix"),
        pytest.param("PROD DATA", ["create"], id="two-words-any-case"),
        pytest.param("datab", ["create"], id="second-word-prefix"),
        pytest.param("web", ["update", "start", "stop"], id="shared-prefix"),
        pytest.param("web-fr", ["update"], id="with-punctuation"),
        pytest.param("backup volume", ["delete"], id="whole-name"),
        pytest.param("restart", ["restart"], id="action-id"),
        pytest.param("login f", ["login_failed"], id="action-label-prefix"),
        pytest.param("Token Created", ["token"], id="action-label"),
        pytest.param("carol@ex", ["restart"], id="email-prefix"),
        pytest.param("CAROL", ["restart"], id="email-any-case"),
        pytest.param("erin@example.com", ["impersonated"], id="email-acted-as"),
        pytest.param("zebra", [], id="no-match"),
    ],
)
def test_free_text(store: AuditStore, data: Dataset, text: str, expected: list[str]) -> None:
    """Search is case-insensitive and by word prefix over resource name, action and email."""
    assert _found(store, search=text) == data.ids(*expected)


def test_free_text_combines_with_filters(store: AuditStore, data: Dataset) -> None:
    """Text narrows the other filters, it does not widen them."""
    assert _found(store, search="web", action="start-stop") == data.ids("start", "stop")
    assert _found(store, search="web", since="7d") == data.ids("update")


@pytest.mark.parametrize("text", ["prod*", '"prod"', "(prod)", "-prod", "+prod", "prod:", "prod\\"])
def test_syntax_around_a_word_is_not_syntax(store: AuditStore, data: Dataset, text: str) -> None:
    """Query-language characters around a word are ignored, the word is still looked for."""
    assert _found(store, search=text) == data.ids("create")


HOSTILE = [
    pytest.param("*", id="star"),
    pytest.param("OR", id="or"),
    pytest.param("prod OR web", id="or-between-words"),
    pytest.param('"', id="quote"),
    pytest.param('"prod', id="unbalanced-quote"),
    pytest.param("\\", id="backslash"),
    pytest.param("resource_name:prod", id="field-value"),
    pytest.param("audit.resource.name:*", id="field-wildcard"),
    pytest.param("a AND b", id="and"),
    pytest.param("NOT prod", id="not"),
    pytest.param(")", id="paren"),
    pytest.param("NEAR(prod web, 2)", id="near"),
    pytest.param("prod^2 web~1 {x TO y}", id="lucene-operators"),
    pytest.param("' OR 1=1 --", id="sql"),
    pytest.param("x" * 200, id="200-chars"),
    pytest.param("prod " * 40, id="many-words"),
    pytest.param("prod\x00web", id="nul"),
    pytest.param("🚀 prod 🔥", id="emoji"),
    pytest.param("\u202eprod", id="bidi-override"),
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_search_is_safe(store: AuditStore, data: Dataset, text: str) -> None:
    """Query syntax in search text never errors and never reaches beyond the tenant."""
    query = _query(search=text)
    events = store.search(query).events
    assert {event.id for event in events} <= data.ids(*data.acme)
    assert store.count(query) == len(events)
    assert [event.id for event in store.iterate(query)] == [event.id for event in events]


def test_search_longer_than_the_limit_is_refused() -> None:
    """More than 200 characters of search text is a clear error, not a slow query."""
    with pytest.raises(QueryError, match="200"):
        _query(search="x" * 201)


# -- tenants -------------------------------------------------------------------------------


def test_unknown_tenant_is_empty(store: AuditStore, data: Dataset) -> None:
    """A tenant without records sees nothing, whatever the filters."""
    query = _query(tenant="initech", search="prod")
    assert store.search(query).events == []
    assert store.search(_query(tenant="initech")).events == []
    assert store.count(_query(tenant="initech")) == 0
    assert list(store.iterate(_query(tenant="initech"))) == []
    assert store.get("initech", data.acme["create"].id) is None


@pytest.mark.parametrize(
    "filters", [{}, {"search": "prod"}, {"user": "ann@example.com"}, {"action": "start-stop"}]
)
def test_never_another_tenants_data(store: AuditStore, data: Dataset, filters: dict[str, object]) -> None:
    """Tenants with identical names, users and actions only ever see their own events."""
    for tenant, own in (("acme", data.acme), ("globex", data.globex)):
        query = _query(tenant=tenant, **filters)
        ids = {event.id for event in store.search(query).events}
        assert ids
        assert ids <= {event.id for event in own.values()}
        assert {event.tenant.id for event in store.iterate(query) if event.tenant} == {tenant}


def test_records_without_a_tenant(loaded_store: Loader) -> None:
    """Records made without a tenant are found under NO_TENANT, and only there."""
    untenanted = make_event("login", tenant=None, ago_ms=MINUTE)
    store = loaded_store([untenanted, make_event("login", tenant="acme", ago_ms=2 * MINUTE)])
    assert [event.id for event in store.search(_query(tenant=NO_TENANT)).events] == [untenanted.id]
    assert untenanted.id not in {event.id for event in store.search(_query(tenant="acme")).events}
    assert store.get(NO_TENANT, untenanted.id) is not None
    assert store.get("acme", untenanted.id) is None


# Two tenants whose ids share their first 1,100 characters, and one whose 600 emoji are
# 1,200 UTF-16 code units: past OpenSearch's keyword limit (ignore_above 1024), all of them.
LONG_A = "tenant-" + "x" * 1100 + "-a"
LONG_B = "tenant-" + "x" * 1100 + "-b"
ASTRAL = "\U0001f680" * 600


def _own_only(store: AuditStore, tenant: str, expected: AuditEvent) -> None:
    """``tenant`` sees exactly ``expected``, through every read, with its id as written."""
    query = _query(tenant=tenant)
    assert [event.id for event in store.search(query).events] == [expected.id]
    assert [event.id for event in store.iterate(query)] == [expected.id]
    assert store.count(query) == 1
    found = store.get(tenant, expected.id)
    assert found is not None
    assert found.tenant is not None
    assert found.tenant.id == tenant


def test_over_long_tenant_ids_stay_apart(loaded_store: Loader) -> None:
    """Tenant ids past the keyword limit are neither 'no tenant' nor merged by a shared prefix."""
    events = {
        tenant: make_event("login", tenant=tenant, ago_ms=MINUTE) for tenant in (LONG_A, LONG_B, ASTRAL)
    }
    untenanted = make_event("login", tenant=None, ago_ms=2 * MINUTE)
    store = loaded_store([*events.values(), untenanted])
    for tenant, event in events.items():
        _own_only(store, tenant, event)
        assert store.get(NO_TENANT, event.id) is None
    assert [event.id for event in store.search(_query(tenant=NO_TENANT)).events] == [untenanted.id]
    assert store.get(LONG_A, events[LONG_B].id) is None


def test_a_tenant_named_like_the_no_tenant_marker(loaded_store: Loader) -> None:
    """A tenant called '-' is a tenant: its records and those without a tenant never mix."""
    dash = make_event("login", tenant="-", ago_ms=MINUTE)
    untenanted = make_event("login", tenant=None, ago_ms=2 * MINUTE)
    store = loaded_store([dash, untenanted])
    _own_only(store, "-", dash)
    assert [event.id for event in store.search(_query(tenant=NO_TENANT)).events] == [untenanted.id]
    assert store.get(NO_TENANT, dash.id) is None
    assert store.get("-", untenanted.id) is None


def test_a_tenant_named_like_a_hashed_key(loaded_store: Loader) -> None:
    """A tenant whose id is the stored key of another (hashed) tenant id sees only its own records."""
    from audit_middleware.model.tenancy import scope_key  # noqa: PLC0415 - new with the fix

    long_event = make_event("login", tenant=LONG_A, ago_ms=MINUTE)
    impostor = make_event("login", tenant=scope_key(LONG_A), ago_ms=2 * MINUTE)
    store = loaded_store([long_event, impostor])
    _own_only(store, LONG_A, long_event)
    _own_only(store, scope_key(LONG_A), impostor)


def test_over_long_project_ids_filter_alike(loaded_store: Loader) -> None:
    """A project id past the keyword limit filters the same on every store."""
    project = "p" * 1500
    wanted = make_event("create", project=project, ago_ms=MINUTE)
    store = loaded_store([wanted, make_event("create", project="p" * 1499, ago_ms=2 * MINUTE)])
    assert [event.id for event in store.search(_query(project=project)).events] == [wanted.id]
    (found,) = store.search(_query(project=project)).events
    assert found.project is not None
    assert found.project.id == project


def test_a_project_named_like_the_no_project_marker(loaded_store: Loader) -> None:
    """A project called '-' is a project: NO_PROJECT never selects it, nor it the records without one."""
    dash = make_event("create", project="-", ago_ms=MINUTE)
    loose = make_event("create", ago_ms=2 * MINUTE)
    store = loaded_store([dash, loose])
    assert [event.id for event in store.search(_query(project="-")).events] == [dash.id]
    assert [event.id for event in store.search(_query(projects=["-"])).events] == [dash.id]
    assert [event.id for event in store.search(_query(project=NO_PROJECT)).events] == [loose.id]
    assert [event.id for event in store.search(_query(projects=[NO_PROJECT])).events] == [loose.id]
    found = {event.id: event for event in store.search(_query(projects=["-", NO_PROJECT])).events}
    assert set(found) == {dash.id, loose.id}
    assert found[dash.id].project is not None
    assert found[dash.id].project.id == "-"


def test_an_allow_list_of_over_long_project_ids(loaded_store: Loader) -> None:
    """Allow-lists look projects up by their stored key, as the single project filter does."""
    long_a, long_b = "p" * 1500 + "a", "p" * 1500 + "b"
    wanted = make_event("create", project=long_a, ago_ms=MINUTE)
    store = loaded_store([wanted, make_event("create", project=long_b, ago_ms=2 * MINUTE)])
    assert [event.id for event in store.search(_query(projects=[long_a])).events] == [wanted.id]
    assert [event.id for event in store.search(_query(projects=[long_a, NO_PROJECT])).events] == [wanted.id]


# -- order and pages -----------------------------------------------------------------------


def test_newest_first(store: AuditStore, data: Dataset) -> None:
    """Results come newest first."""
    events = store.search(_query()).events
    expected = sorted(data.acme.values(), key=lambda event: (event.unix_ms, event.id), reverse=True)
    assert [event.id for event in events] == [event.id for event in expected]


def test_ties_are_broken_by_id(loaded_store: Loader) -> None:
    """Events of the same millisecond come in descending id order, on every page."""
    same = [make_event("create", unix_ms=NOW_MS - MINUTE) for _ in range(7)]
    store = loaded_store(same[::2] + same[1::2])  # stored out of order
    expected = sorted((event.id for event in same), reverse=True)
    assert [event.id for event in store.search(_query()).events] == expected
    assert _all_pages(store, _query(page_size=3)) == expected


def _all_pages(store: AuditStore, query: AuditQuery) -> list[str]:
    ids: list[str] = []
    for _ in range(1000):
        page = store.search(query)
        assert len(page.events) <= query.page_size
        ids += [event.id for event in page.events]
        if page.next_cursor is None:
            return ids
        assert len(page.events) == query.page_size
        query = query.next_page(Cursor.decode(page.next_cursor))
    raise AssertionError("pagination did not end")


@pytest.mark.parametrize("page_size", [1, 4, 23, 24, 500])
def test_pages_have_no_duplicates_and_no_gaps(loaded_store: Loader, page_size: int) -> None:
    """Walking the cursors visits every matching event exactly once, in order."""
    events = [make_event("create", ago_ms=(index // 3) * MINUTE) for index in range(23)]  # ties too
    events += [make_event("create", tenant="globex", ago_ms=index * MINUTE) for index in range(5)]
    store = loaded_store(events)
    expected = sorted(
        (e for e in events if e.tenant and e.tenant.id == "acme"), key=lambda e: (e.unix_ms, e.id)
    )
    assert _all_pages(store, _query(page_size=page_size)) == [event.id for event in reversed(expected)]


def test_pages_with_filters(store: AuditStore, data: Dataset) -> None:
    """Cursors continue the same filtered result."""
    ids = _all_pages(store, _query(user="ann@example.com", page_size=1))
    assert set(ids) == data.ids("create", "token", "delete", "stop")
    assert len(ids) == 4


def test_last_page_has_no_cursor(store: AuditStore, data: Dataset) -> None:
    """A page that ends the result says so, even when it is exactly full."""
    assert store.search(_query(page_size=len(data.acme))).next_cursor is None
    assert store.search(_query(page_size=len(data.acme) - 1)).next_cursor is not None


@pytest.mark.parametrize("size", [0, -1, 501, 10**9])
def test_page_size_bounds(size: int) -> None:
    """Page sizes outside 1..500 are refused before any store is asked."""
    with pytest.raises(QueryError, match="page size"):
        _query(page_size=size)


def test_count_ignores_page_and_cursor(store: AuditStore, data: Dataset) -> None:
    """count() is the size of the whole result."""
    first = store.search(_query(page_size=2))
    assert first.next_cursor is not None
    query = _query(page_size=2, cursor=first.next_cursor)
    assert store.count(query) == len(data.acme)


def test_bounded_count_is_exact_up_to_its_limit(store: AuditStore, data: Dataset) -> None:
    """count_bounded() is exact up to its limit, then the limit with "more"; count() stays exact."""
    query = _query()
    total = store.count(query)
    assert total == len(data.acme) > 2
    assert store.count_bounded(query, limit=total) == BoundedCount(total, more=False)
    assert store.count_bounded(query, limit=total + 5) == BoundedCount(total, more=False)
    assert store.count_bounded(query, limit=total - 1) == BoundedCount(total - 1, more=True)
    assert str(store.count_bounded(query, limit=2)) == "2+"
    assert store.count_bounded(_query(user="nobody@example.com")) == BoundedCount(0, more=False)
    with pytest.raises(QueryError, match="limit"):
        store.count_bounded(query, limit=0)


# -- get -----------------------------------------------------------------------------------


def test_get_returns_the_stored_event(store: AuditStore, data: Dataset) -> None:
    """get() returns the event as it was recorded."""
    original = data.acme["update"]
    found = store.get("acme", original.id)
    assert found is not None
    assert found.to_document() == original.to_document()


@pytest.mark.parametrize("event_id", ["", "nope", "*", "' OR 1=1 --", "x" * 5000, "\x00"])
def test_get_of_unknown_ids(store: AuditStore, data: Dataset, event_id: str) -> None:
    """An id that is not there (however odd) is None, not an error."""
    assert store.get("acme", event_id) is None


def test_get_never_returns_another_tenants_event(store: AuditStore, data: Dataset) -> None:
    """The id of another tenant's event is not found."""
    assert store.get("globex", data.acme["create"].id) is None
    assert store.get("acme", data.globex["create"].id) is None


# -- iterate and export --------------------------------------------------------------------


def test_iterate_returns_every_match_newest_first(loaded_store: Loader) -> None:
    """iterate() is not limited to a page, and keeps the order."""
    events = [make_event("delete" if index % 2 else "create", ago_ms=index * MINUTE) for index in range(1203)]
    store = loaded_store(events)
    deletes = [event.id for event in store.iterate(_query(action="delete", page_size=5))]
    assert deletes == [event.id for event in events if event.action.id == "delete"]


def test_export_csv(store: AuditStore, data: Dataset) -> None:
    """CSV export writes a header and one row per matching event, newest first."""
    out = io.BytesIO()
    query = _query(since="7d")
    rows = store.export(query, out, "csv")
    parsed = list(csv.DictReader(io.StringIO(out.getvalue().decode("utf-8"), newline="")))
    assert rows == len(parsed) == store.count(query) == 6
    assert [row["event_id"] for row in parsed] == [event.id for event in store.search(query).events]
    update = next(row for row in parsed if row["event_id"] == data.acme["update"].id)
    assert (update["previous_values"], update["new_values"], update["modified_fields"]) == (
        '{"cpus":2}',
        '{"cpus":4}',
        "cpus",
    )
    assert update["ip"] == "10.0.0.2"
    assert {row["tenant"] for row in parsed} == {"acme"}


def test_export_ndjson(store: AuditStore, data: Dataset) -> None:
    """NDJSON export writes each stored document on its own line."""
    out = io.BytesIO()
    rows = store.export(_query(user="ann@example.com"), out, "ndjson")
    documents = [json.loads(line) for line in out.getvalue().splitlines()]
    assert rows == len(documents) == 4
    assert {doc["event"]["id"] for doc in documents} == data.ids("create", "token", "delete", "stop")
    # as stored: on a chained store with the record's link, otherwise as the record made it
    first = documents[0]
    first["audit"].pop("chain", None)
    assert first == data.acme["create"].to_document()


# -- tail ----------------------------------------------------------------------------------


class _Consumer:
    """Reads a tail in a thread, so the test can keep adding events meanwhile."""

    def __init__(self, live: object, stop: threading.Event) -> None:
        self.batches: queue.Queue[list[AuditEvent]] = queue.Queue()
        self._stop = stop
        self._thread = threading.Thread(target=self._run, args=(live,), daemon=True)
        self._thread.start()

    def _run(self, live: object) -> None:
        for batch in live:  # type: ignore[attr-defined]
            self.batches.put(batch)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_tail_since_yields_newer_events_then_new_arrivals(loaded_store: Loader) -> None:
    """tail(since=...) starts with the events at or after since, then yields new ones as they come."""
    store = loaded_store([make_event("create", ago_ms=HOUR), make_event("create", tenant="globex", ago_ms=1)])
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    stop = threading.Event()
    consumer = _Consumer(store.tail(_query(), since=since, poll_interval=0.05, stop=stop), stop)
    try:
        now_ms = int(time.time() * 1000)
        older, newer = make_event("update", unix_ms=now_ms - 10), make_event("delete", unix_ms=now_ms)
        loaded_store([older, newer, make_event("update", tenant="globex", unix_ms=now_ms)])
        assert [event.id for event in _collect(consumer, 2)] == [newer.id, older.id]
        later = make_event("restart", unix_ms=int(time.time() * 1000) + 5)
        loaded_store([later])
        assert [event.id for event in _collect(consumer, 1)] == [later.id]
    finally:
        consumer.close()
    assert consumer.batches.empty()


def test_tail_without_since_skips_history(loaded_store: Loader) -> None:
    """Without since, a tail yields events that arrive while it runs, never older history."""
    old = [make_event("create", ago_ms=MINUTE * index) for index in range(1, 4)]
    store = loaded_store(old)
    stop = threading.Event()
    consumer = _Consumer(store.tail(_query(action="login"), poll_interval=0.05, stop=stop), stop)
    try:
        deadline = time.monotonic() + 30
        arrived: list[AuditEvent] = []
        while not arrived and time.monotonic() < deadline:
            new = make_event("login", unix_ms=int(time.time() * 1000))
            loaded_store([new, make_event("logout", unix_ms=int(time.time() * 1000))])
            time.sleep(0.3)
            while not consumer.batches.empty():
                arrived += consumer.batches.get_nowait()
    finally:
        consumer.close()
    assert arrived, "no new event was tailed"
    assert {event.action.id for event in arrived} == {"login"}
    assert {event.tenant.id for event in arrived if event.tenant} == {"acme"}


def test_tail_ends_when_stopped(store: AuditStore) -> None:
    """Setting stop ends the iteration (after at most one poll interval)."""
    stop = threading.Event()
    live = store.tail(_query(), poll_interval=0.05, stop=stop)
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    assert list(live) == []
    assert time.monotonic() - started < 10


def _collect(consumer: _Consumer, count: int, timeout: float = 30.0) -> list[AuditEvent]:
    """The next ``count`` tailed events, newest first (checking each batch is newest first)."""
    seen: list[AuditEvent] = []
    deadline = time.monotonic() + timeout
    while len(seen) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {len(seen)} of {count} events were tailed"
        try:
            batch = consumer.batches.get(timeout=remaining)
        except queue.Empty:
            continue
        keys = [(event.unix_ms, event.id) for event in batch]
        assert keys == sorted(keys, reverse=True), "a tail batch is not newest first"
        seen += batch
    assert len(seen) == count, f"{len(seen) - count} more events were tailed than arrived"
    return sorted(seen, key=lambda event: (event.unix_ms, event.id), reverse=True)
