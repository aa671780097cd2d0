"""OpenSearchStore against the real node: query DSL, tenant scope, PIT export, tail, missing streams."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from opensearchpy import NotFoundError, OpenSearch, TransportError

from audit_middleware.errors import AuditError
from audit_middleware.model.actions import CATALOG
from audit_middleware.model.event import NO_TENANT, Actor, AuditEvent, Resource, Scope
from audit_middleware.model.ids import uuid7
from audit_middleware.model.tenancy import NO_PROJECT
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.opensearch.provisioning import SetupConfig, apply
from audit_middleware.query.export import write_export
from audit_middleware.query.model import MAX_TEXT_LENGTH, AuditQuery, BoundedCount, Cursor, QueryError
from audit_middleware.query.opensearch_store import (
    OpenSearchStore,
    OpenSearchStoreError,
    filter_query,
    search_body,
)
from tests.conftest import OPENSEARCH_URL
from tests.integration.layout import remove_layout

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOSTILE = [
    "*",
    "OR",
    "a OR b",
    '"unbalanced',
    "back\\slash\\",
    "name:value",
    "audit.resource.name:*",
    "organization.id:other",
    "(a AND b) || c~2 ^3 [x TO y] {z} /regex/ ?",
    "x" * MAX_TEXT_LENGTH,
    "\x00\t\r\n",
]


def make_event(
    unix_ms: int,
    *,
    tenant: str | None = "acme",
    action: str = "create",
    resource: Resource | None = None,
    actor: Actor | None = None,
    project: str | None = None,
    outcome: str = "success",
    event_id: str | None = None,
) -> AuditEvent:
    """An event with everything the filters look at."""
    return AuditEvent(
        id=event_id or uuid7(unix_ms),
        unix_ms=unix_ms,
        action=CATALOG.get(action),
        actor=actor or Actor(id="u1", email="ann@example.com"),
        outcome=outcome,  # type: ignore[arg-type]
        resource=resource or Resource("pod", "p1", "web-1"),
        tenant=Scope(tenant) if tenant else None,
        project=Scope(project) if project else None,
    )


def load(client: Any, prefix: str, events: list[AuditEvent], *, refresh: bool = True) -> None:
    """Write events as the shipper does: bulk ``create`` with ``_id`` = event id."""
    lines: list[str] = []
    for event in events:
        lines.append(json.dumps({"create": {"_index": f"{prefix}-standard", "_id": event.id}}))
        lines.append(json.dumps(event.to_document()))
    answer = client.bulk(body="\n".join(lines) + "\n", params={"refresh": "true" if refresh else "false"})
    assert not answer["errors"], [item for item in answer["items"] if "error" in item["create"]][:3]


def walk_keys(value: Any) -> Iterator[str]:
    """Every mapping key anywhere inside a JSON-like value."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from walk_keys(inner)
    elif isinstance(value, list):
        for item in value:
            yield from walk_keys(item)


def ids(events: list[AuditEvent]) -> list[str]:
    return [event.id for event in events]


def newest_first(events: list[AuditEvent]) -> list[str]:
    return [e.id for e in sorted(events, key=lambda e: (e.unix_ms, e.id), reverse=True)]


@pytest.fixture(scope="module")
def layout(opensearch) -> Iterator[str]:
    """A set-up prefix of this module's own (templates and data streams), removed afterwards."""
    prefix = f"qos-{uuid.uuid4().hex[:10]}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the local node has no ISM plugin
        apply(opensearch, SetupConfig(prefix=prefix, replicas=0, require_ism=False, alert_rules=()))
    yield prefix
    remove_layout(opensearch, prefix)


@pytest.fixture
def tenant() -> str:
    """A tenant id no other test writes to, so each test sees only its own records."""
    return f"tenant-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def store(opensearch, layout) -> OpenSearchStore:
    return OpenSearchStore(opensearch, prefix=layout)


# -- the query DSL ----------------------------------------------------------------------


def searchable(text: str) -> bool:
    """Whether ``text`` holds a letter or digit (else it matches nothing, on every store)."""
    return any(char.isalnum() for char in text)


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_search_text_builds_only_structured_clauses(text):
    """Query syntax in search text ends up as plain values of match_bool_prefix/prefix clauses."""
    body = search_body(AuditQuery(tenant="acme", text=text))
    keys = set(walk_keys(body))
    assert not keys & {"query_string", "simple_query_string", "wildcard", "regexp", "fuzzy", "script"}
    filters = body["query"]["bool"]["filter"]
    assert filters[0] == {"term": {"organization.id": "acme"}}
    words = list(dict.fromkeys(word.lower() for word in text.split() if searchable(word)))
    if not words:
        assert filters[1:] == [{"match_none": {}}]
        return
    assert len(filters) == 1 + len(words)  # every word must match
    for word, clause in zip(words, filters[1:], strict=True):
        assert clause["bool"]["minimum_should_match"] == 1
        for should in clause["bool"]["should"]:
            ((kind, fields),) = should.items()
            ((field, params),) = fields.items()
            assert kind in {"match_bool_prefix", "prefix"}
            assert params.get("query", params.get("value")) == word, field


def test_free_text_clauses_name_the_mapped_fields():
    """One word searches name and label word prefixes, and name, email, action prefixes."""
    (clause,) = filter_query(AuditQuery(tenant="acme", text="Ann@Ex"))["bool"]["filter"][1:]
    assert clause == {
        "bool": {
            "should": [
                {"match_bool_prefix": {"audit.resource.name.text": {"query": "ann@ex", "operator": "and"}}},
                {"match_bool_prefix": {"audit.action.label.text": {"query": "ann@ex", "operator": "and"}}},
                {"prefix": {"audit.resource.name.lower": {"value": "ann@ex"}}},
                {"prefix": {"user.email.lower": {"value": "ann@ex"}}},
                {"prefix": {"user.effective.email.lower": {"value": "ann@ex"}}},
                {"prefix": {"event.action": {"value": "ann@ex"}}},
                {"prefix": {"audit.action.label.lower": {"value": "ann@ex"}}},
            ],
            "minimum_should_match": 1,
        }
    }


def test_search_text_is_bounded_and_lowercased_like_lucene():
    """Text is cut to the model's limit; 'İ' is left for the server to fold, not split in two."""
    query = AuditQuery(tenant="acme", text="A" * MAX_TEXT_LENGTH)
    clause = filter_query(query)["bool"]["filter"][1]["bool"]["should"][2]
    assert clause == {"prefix": {"audit.resource.name.lower": {"value": "a" * MAX_TEXT_LENGTH}}}
    dotted = filter_query(AuditQuery(tenant="acme", text="İSTANBUL"))["bool"]["filter"][1]
    assert dotted["bool"]["should"][2]["prefix"]["audit.resource.name.lower"]["value"] == "İstanbul"


def test_records_without_tenant_are_selected_by_no_tenant():
    """NO_TENANT scopes to records without organization.id (or stored as '-'), nothing else."""
    assert filter_query(AuditQuery(tenant=NO_TENANT))["bool"]["filter"] == [
        {
            "bool": {
                "should": [
                    {"term": {"organization.id": "-"}},
                    {"bool": {"must_not": [{"exists": {"field": "organization.id"}}]}},
                ],
                "minimum_should_match": 1,
            }
        }
    ]


def test_project_allow_lists_and_excluded_actions_have_their_clauses():
    """An allow-list is a terms filter (NO_PROJECT: no project field); exclusions a must_not."""
    query = AuditQuery(tenant="acme", projects=("p1", "p2", NO_PROJECT), exclude_actions=("audit_viewed",))
    clauses = search_body(query)["query"]["bool"]["filter"]
    assert clauses[1] == {
        "bool": {
            "should": [
                {"terms": {"audit.project.id": ["p1", "p2"]}},
                {"bool": {"must_not": [{"exists": {"field": "audit.project.id"}}]}},
            ],
            "minimum_should_match": 1,
        }
    }
    assert clauses[2] == {"bool": {"must_not": [{"terms": {"event.action": ["audit_viewed"]}}]}}
    assert search_body(AuditQuery(tenant="acme", projects=()))["query"]["bool"]["filter"][1] == {
        "match_none": {}
    }


def test_every_filter_has_its_clause():
    """Each filter of the model maps to its documented clause, all inside one bool filter."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    query = AuditQuery(
        tenant="acme",
        actions=("start", "stop"),
        resource_types=("pod",),
        user="Ann@Example.com",
        project="proj-1",
        outcome="failure",
        start=start,
        end=start + timedelta(days=1),
        cursor=Cursor(BASE_MS, "id-9"),
        page_size=25,
    )
    body = search_body(query)
    assert body["query"] == {
        "bool": {
            "filter": [
                {"term": {"organization.id": "acme"}},
                {"terms": {"event.action": ["start", "stop"]}},
                {"terms": {"audit.resource.type": ["pod"]}},
                {
                    "bool": {
                        "should": [
                            {"term": {"user.id": "Ann@Example.com"}},
                            {"term": {"user.email.lower": "ann@example.com"}},
                            {"term": {"user.effective.id": "Ann@Example.com"}},
                            {"term": {"user.effective.email.lower": "ann@example.com"}},
                        ],
                        "minimum_should_match": 1,
                    }
                },
                {"term": {"audit.project.id": "proj-1"}},
                {"term": {"event.outcome": "failure"}},
                {
                    "range": {
                        "@timestamp": {"gte": BASE_MS, "lt": BASE_MS + 86_400_000, "format": "epoch_millis"}
                    }
                },
            ]
        }
    }
    # time alone, the index sort's first key: the store orders one millisecond's records by id itself
    assert [next(iter(key)) for key in body["sort"]] == ["@timestamp"]
    assert all(next(iter(key.values()))["order"] == "desc" for key in body["sort"])
    assert body["search_after"] == [BASE_MS + 1], "from the cursor's own millisecond on"
    assert body["size"] == 25 + 2 + 8, "room for the records of that millisecond shown already"
    assert body["track_total_hits"] is False


def test_invalid_options_are_rejected():
    """Batch sizes outside 1..10000 and a negative lookback are configuration errors."""
    client = OpenSearch([OPENSEARCH_URL])
    with pytest.raises(QueryError, match="export_batch_size"):
        OpenSearchStore(client, export_batch_size=0)
    with pytest.raises(QueryError, match="tail_lookback"):
        OpenSearchStore(client, tail_lookback=-1)


# -- search, filters and tenant scope against the node ----------------------------------


@pytest.mark.opensearch
def test_filters_find_exactly_their_events(opensearch, layout, store, tenant):
    """Action, resource type, user (id, any-case email, effective), project, outcome and range filter."""
    ann = Actor(id="u1", email="Ann@Example.com")
    bob_as_ann = Actor(id="u1", email="Ann@Example.com", impersonator=Actor(id="u2", email="bob@example.com"))
    events = [
        make_event(BASE_MS + 1, tenant=tenant, action="create", actor=ann, project="p1"),
        make_event(
            BASE_MS + 2, tenant=tenant, action="start", resource=Resource("virtual_machine", "v1", "vm")
        ),
        make_event(BASE_MS + 3, tenant=tenant, action="login_failed", outcome="failure", actor=bob_as_ann),
        make_event(BASE_MS + 4, tenant=tenant, action="delete", actor=Actor(id="u3", email="cy@example.com")),
    ]
    load(opensearch, layout, events)
    e1, e2, e3, e4 = (e.id for e in events)

    def found(**filters: Any) -> list[str]:
        return ids(store.search(AuditQuery(tenant=tenant, **filters)).events)

    assert found() == [e4, e3, e2, e1]
    assert found(actions=("start", "delete")) == [e4, e2]
    assert found(resource_types=("virtual_machine",)) == [e2]
    assert found(user="ANN@example.COM") == [e3, e2, e1]  # e2 and e3 act as ann (default actor / effective)
    assert found(user="u2") == [e3]  # the real person behind an impersonation
    assert found(user="bob@EXAMPLE.com") == [e3]
    assert found(project="p1") == [e1]
    assert found(outcome="failure") == [e3]
    start = datetime.fromtimestamp((BASE_MS + 2) / 1000, tz=timezone.utc)
    assert found(start=start, end=start + timedelta(milliseconds=2)) == [
        e3,
        e2,
    ]  # start inclusive, end exclusive
    assert store.count(AuditQuery(tenant=tenant, actions=("start", "delete"))) == 2


@pytest.mark.opensearch
def test_free_text_matches_names_emails_and_actions_by_prefix(opensearch, layout, store, tenant):
    """Word prefixes of resource names, email and action prefixes, any case and accents, all match."""
    db = make_event(BASE_MS + 1, tenant=tenant, resource=Resource("storage", "s1", "Prod Database"))
    eva = make_event(BASE_MS + 2, tenant=tenant, actor=Actor(id="u9", email="Éva@Example.com"))
    failed = make_event(BASE_MS + 3, tenant=tenant, action="login_failed", outcome="failure")
    dotted = make_event(BASE_MS + 4, tenant=tenant, resource=Resource("storage", "s2", "istanbul-dc"))
    load(opensearch, layout, [db, eva, failed, dotted])

    def found(text: str) -> list[str]:
        return ids(store.search(AuditQuery(tenant=tenant, text=text)).events)

    assert found("data") == [db.id]
    assert found("PROD DAT") == [db.id]
    assert found("eva@ex") == [eva.id]
    assert found("ÉVA") == [eva.id]
    assert found("login f") == [failed.id]
    assert found("FAILED") == [failed.id]
    assert found("login_fa") == [failed.id]
    assert found("İSTANBUL") == [dotted.id]  # folded as the server folds, not as str.lower
    assert found("ann datab") == [db.id]  # every word must match, each in any field
    assert found("create PROD") == [db.id]
    assert found("ann") == [dotted.id, failed.id, db.id]
    assert found("nothing-like-this") == []
    assert found("ann nothing") == []


@pytest.mark.opensearch
@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_is_searched_literally(opensearch, layout, store, tenant, text):
    """Query syntax neither fails nor matches everything; a name holding words and syntax is found by it."""
    literal = make_event(BASE_MS + 1, tenant=tenant, resource=Resource("pod", "p1", text))
    plain = make_event(BASE_MS + 2, tenant=tenant, resource=Resource("pod", "p2", "web-2"))
    load(opensearch, layout, [literal, plain])
    events = store.search(AuditQuery(tenant=tenant, text=text)).events
    assert ids(events) == ([literal.id] if searchable(text) else [])  # punctuation alone finds nothing


@pytest.mark.opensearch
def test_tenant_scope_is_never_crossed(opensearch, layout, store, tenant):
    """Search, count, get, iterate and text search only ever see the query's tenant."""
    mine = make_event(BASE_MS + 1, tenant=tenant, resource=Resource("pod", "p1", "shared-name"))
    theirs = make_event(BASE_MS + 2, tenant=f"{tenant}-other", resource=Resource("pod", "p1", "shared-name"))
    load(opensearch, layout, [mine, theirs])

    assert ids(store.search(AuditQuery(tenant=tenant)).events) == [mine.id]
    assert ids(store.search(AuditQuery(tenant=tenant, text="organization.id:*")).events) == []
    assert ids(store.search(AuditQuery(tenant=tenant, text="shared")).events) == [mine.id]
    assert store.count(AuditQuery(tenant=tenant)) == 1
    assert ids(list(store.iterate(AuditQuery(tenant=tenant)))) == [mine.id]
    assert store.get(tenant, theirs.id) is None
    got = store.get(tenant, mine.id)
    assert got is not None
    assert got.to_document() == mine.to_document()
    assert store.get("no-such-tenant", mine.id) is None
    assert store.search(AuditQuery(tenant="no-such-tenant")).events == []
    assert store.count(AuditQuery(tenant="no-such-tenant")) == 0


@pytest.mark.opensearch
def test_records_without_a_tenant_are_their_own_scope(opensearch, layout, store, tenant):
    """Records made without a tenant are found with NO_TENANT and only with it."""
    orphan = make_event(BASE_MS + 1, tenant=None, resource=Resource("pod", "p1", f"orphan-{tenant}"))
    owned = make_event(BASE_MS + 2, tenant=tenant, resource=Resource("pod", "p1", f"orphan-{tenant}"))
    load(opensearch, layout, [orphan, owned])
    text = f"orphan-{tenant}"
    assert ids(store.search(AuditQuery(tenant=NO_TENANT, text=text)).events) == [orphan.id]
    assert ids(store.search(AuditQuery(tenant=tenant, text=text)).events) == [owned.id]
    assert store.get(NO_TENANT, orphan.id) is not None
    assert store.get(NO_TENANT, owned.id) is None
    assert store.get(tenant, orphan.id) is None


@pytest.mark.opensearch
def test_get_rejects_a_missing_tenant_and_odd_ids(store):
    """get() needs a tenant; ids that cannot be stored simply are not found."""
    with pytest.raises(QueryError, match="tenant"):
        store.get("", "x")
    assert store.get("acme", "") is None
    assert store.get("acme", "x" * 2000) is None


@pytest.mark.opensearch
def test_pages_are_newest_first_and_continue_without_gaps(opensearch, layout, store, tenant):
    """Pages follow (@timestamp, event.id) descending, ties included, and the last has no cursor."""
    events = [make_event(BASE_MS + i // 3, tenant=tenant) for i in range(23)]  # three per millisecond
    load(opensearch, layout, events)
    query = AuditQuery(tenant=tenant, page_size=5)
    seen: list[str] = []
    pages = 0
    while True:
        page = store.search(query)
        pages += 1
        seen.extend(ids(page.events))
        if page.next_cursor is None:
            break
        query = query.next_page(Cursor.decode(page.next_cursor))
    assert seen == newest_first(events)
    assert pages == 5


@pytest.mark.opensearch
@pytest.mark.parametrize("page_size", [1, 4, 7, 50])
def test_pages_inside_a_crowded_millisecond_match_the_two_key_sort(
    opensearch, layout, store, tenant, page_size
):
    """Pages that start and end inside one millisecond of many records (a burst, an import)
    hold exactly what a sort on (@timestamp, event.id) gives: nothing skipped, nothing twice."""
    events = [make_event(BASE_MS + 5, tenant=tenant) for _ in range(2)]
    crowded = [make_event(BASE_MS + 4, tenant=tenant) for _ in range(23)]
    events += crowded + [make_event(BASE_MS + 3 - i // 2, tenant=tenant) for i in range(7)]
    # Each load is its own segment: the crowded millisecond's ids, smallest first, are spread
    # over three, so a sort by time alone meets them in segment order, not by id.
    by_id = sorted(crowded, key=lambda event: event.id)
    for part in (by_id[:8], by_id[8:16], by_id[16:] + [e for e in events if e not in crowded]):
        load(opensearch, layout, part)
    query = AuditQuery(tenant=tenant, page_size=page_size)
    pages: list[list[str]] = []
    for _ in range(len(events) + 1):  # a page that repeats the last one must not loop forever
        page = store.search(query)
        pages.append(ids(page.events))
        if page.next_cursor is None:
            break
        query = query.next_page(Cursor.decode(page.next_cursor))
    expected = newest_first(events)
    assert [event_id for page in pages for event_id in page] == expected
    assert [len(page) for page in pages[:-1]] == [page_size] * (len(pages) - 1)


@pytest.mark.opensearch
def test_exact_page_multiple_ends_with_no_cursor(opensearch, layout, store, tenant):
    """When the results fill the page exactly, no empty page follows."""
    load(opensearch, layout, [make_event(BASE_MS + i, tenant=tenant) for i in range(4)])
    page = store.search(AuditQuery(tenant=tenant, page_size=4))
    assert len(page.events) == 4
    assert page.next_cursor is None


# -- export under a point in time --------------------------------------------------------


class SpyClient:
    """Delegates to a real client and records the point-in-time calls."""

    def __init__(self, client: OpenSearch, *, pit_status: int | None = None) -> None:
        self._client = client
        self._pit_status = pit_status
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.searches = 0

    def create_pit(self, **kwargs: Any) -> Any:
        if self._pit_status is not None:
            raise TransportError(
                self._pit_status, "no_pit", {"error": {"type": "no_pit", "reason": "absent"}}
            )
        answer = self._client.create_pit(**kwargs)
        self.created.append(answer["pit_id"])
        return answer

    def delete_pit(self, **kwargs: Any) -> Any:
        self.deleted.extend(kwargs["body"]["pit_id"])
        return self._client.delete_pit(**kwargs)

    def search(self, **kwargs: Any) -> Any:
        self.searches += 1
        return self._client.search(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def live_pits(client: OpenSearch) -> set[str]:
    return {pit["pit_id"] for pit in client.get_all_pits().get("pits", [])}


@pytest.fixture(scope="module")
def five_thousand(opensearch, layout) -> tuple[str, list[AuditEvent]]:
    """5,000 events of one tenant, several per millisecond."""
    tenant = f"export-{uuid.uuid4().hex[:8]}"
    events = [make_event(BASE_MS + i // 4, tenant=tenant) for i in range(5000)]
    for start in range(0, len(events), 1000):
        load(opensearch, layout, events[start : start + 1000], refresh=False)
    opensearch.indices.refresh(index=f"{layout}-*")
    return tenant, events


@pytest.mark.opensearch
def test_export_streams_5000_events_in_order_under_one_pit(opensearch, layout, five_thousand):
    """iterate() pages through 5,000 events newest first without duplicates, then deletes its PIT."""
    tenant, events = five_thousand
    spy = SpyClient(opensearch)
    store = OpenSearchStore(spy, prefix=layout, export_batch_size=700)  # type: ignore[arg-type]
    exported = ids(list(store.iterate(AuditQuery(tenant=tenant))))
    assert exported == newest_first(events)
    assert len(set(exported)) == 5000
    assert spy.searches == 8  # ceil(5000 / 700) pages, the last one short
    assert len(spy.created) == 1
    assert spy.deleted == spy.created
    assert not live_pits(opensearch) & set(spy.created)


@pytest.mark.opensearch
def test_export_is_a_snapshot_of_its_start(opensearch, layout, five_thousand):
    """Events written while an export runs (even ones that sort into later pages) are not in it."""
    tenant, events = five_thousand
    store = OpenSearchStore(opensearch, prefix=layout, export_batch_size=1000)
    iterator = store.iterate(AuditQuery(tenant=tenant))
    first = next(iterator)
    late = [make_event(BASE_MS - 1000 - i, tenant=tenant) for i in range(3)]  # oldest: on the last page
    load(opensearch, layout, late)
    try:
        exported = [first.id, *ids(list(iterator))]
        assert exported == newest_first(events)
        assert store.count(AuditQuery(tenant=tenant)) == 5003
    finally:
        opensearch.delete_by_query(
            index=f"{layout}-*", body={"query": {"ids": {"values": ids(late)}}}, params={"refresh": "true"}
        )


@pytest.mark.opensearch
def test_export_snapshot_is_taken_by_the_call(opensearch, layout, tenant):
    """Events written after iterate() returned, before the first item is read, are not exported."""
    store = OpenSearchStore(opensearch, prefix=layout)
    before = [make_event(BASE_MS + i, tenant=tenant) for i in range(3)]
    load(opensearch, layout, before)
    iterator = store.iterate(AuditQuery(tenant=tenant))
    load(opensearch, layout, [make_event(BASE_MS + 10, tenant=tenant)])
    assert ids(list(iterator)) == newest_first(before)


@pytest.mark.opensearch
def test_abandoned_export_deletes_its_pit(opensearch, layout, five_thousand):
    """Closing the iterator early (a client that hung up) deletes the point in time."""
    tenant, _ = five_thousand
    spy = SpyClient(opensearch)
    store = OpenSearchStore(spy, prefix=layout, export_batch_size=100)  # type: ignore[arg-type]
    iterator = store.iterate(AuditQuery(tenant=tenant))
    assert len([next(iterator) for _ in range(150)]) == 150
    iterator.close()
    assert spy.deleted == spy.created != []
    assert not live_pits(opensearch) & set(spy.created)


@pytest.mark.opensearch
@pytest.mark.parametrize("status", [400, 404, 405])
def test_export_without_the_pit_api_pages_with_search_after(opensearch, layout, five_thousand, status):
    """A cluster refusing point in time still exports everything, in order."""
    tenant, events = five_thousand
    spy = SpyClient(opensearch, pit_status=status)
    store = OpenSearchStore(spy, prefix=layout, export_batch_size=1000)  # type: ignore[arg-type]
    assert ids(list(store.iterate(AuditQuery(tenant=tenant, outcome="success")))) == newest_first(events)
    assert spy.created == spy.deleted == []


@pytest.mark.opensearch
def test_export_applies_the_filters(opensearch, layout, five_thousand):
    """iterate() honours the query's filters and cursor, and ignores its page size."""
    tenant, events = five_thousand
    store = OpenSearchStore(opensearch, prefix=layout, export_batch_size=250)
    start = datetime.fromtimestamp((BASE_MS + 100) / 1000, tz=timezone.utc)
    query = AuditQuery(tenant=tenant, start=start, end=start + timedelta(milliseconds=50), page_size=3)
    expected = newest_first([e for e in events if BASE_MS + 100 <= e.unix_ms < BASE_MS + 150])
    assert ids(list(store.iterate(query))) == expected
    assert len(expected) == 200
    after = expected[9]  # mid-millisecond: the cursor's id breaks the tie
    cursor = Cursor(next(e.unix_ms for e in events if e.id == after), after)
    assert ids(list(store.iterate(query.next_page(cursor)))) == expected[10:]


# -- tail ----------------------------------------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def guarded_stop(seconds: float = 20.0) -> threading.Event:
    """A stop event that sets itself after ``seconds``, so a broken tail cannot hang the suite."""
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.daemon = True
    timer.start()
    return stop


@pytest.mark.opensearch
def test_tail_yields_only_new_events_newest_first(opensearch, layout, store, tenant):
    """Without 'since', history is skipped and each new batch comes newest first, once."""
    history = make_event(now_ms() - 2000, tenant=tenant)
    load(opensearch, layout, [history])
    stop = guarded_stop()
    tail = store.tail(AuditQuery(tenant=tenant), poll_interval=0.05, stop=stop)
    fresh = [make_event(now_ms() + i, tenant=tenant) for i in range(3)]
    threading.Timer(0.3, load, (opensearch, layout, fresh)).start()
    batch = next(tail)
    assert ids(batch) == newest_first(fresh)
    later = make_event(now_ms() + 10, tenant=tenant)
    load(opensearch, layout, [later, make_event(now_ms(), tenant=f"{tenant}-other")])
    assert ids(next(tail)) == [later.id]
    stop.set()
    assert list(tail) == []


@pytest.mark.opensearch
def test_tail_starts_when_called(opensearch, layout, store, tenant):
    """An event written after tail() returned but before the first poll is new, not history."""
    stop = guarded_stop()
    tail = store.tail(AuditQuery(tenant=tenant), poll_interval=0.05, stop=stop)
    event = make_event(now_ms(), tenant=tenant)
    load(opensearch, layout, [event])
    assert ids(next(tail)) == [event.id]
    stop.set()


@pytest.mark.opensearch
def test_tail_since_starts_with_history_then_follows(opensearch, layout, store, tenant):
    """With 'since', the first batch holds the events since then; filters apply to every poll."""
    base = now_ms() - 60_000
    old = [make_event(base + i, tenant=tenant, action="delete") for i in range(3)]
    skipped = make_event(base - 10_000, tenant=tenant, action="delete")
    other_action = make_event(base + 5, tenant=tenant, action="create")
    load(opensearch, layout, [*old, skipped, other_action])
    stop = guarded_stop()
    since = datetime.fromtimestamp(base / 1000, tz=timezone.utc)
    tail = store.tail(AuditQuery(tenant=tenant, actions=("delete",)), since, poll_interval=0.05, stop=stop)
    assert ids(next(tail)) == newest_first(old)
    new = make_event(now_ms(), tenant=tenant, action="delete")
    load(opensearch, layout, [new])
    assert ids(next(tail)) == [new.id]
    stop.set()
    assert list(tail) == []


@pytest.mark.opensearch
def test_tail_delivers_late_visible_events_once(opensearch, layout, store, tenant):
    """An event older than one already yielded (a slower worker's flush) still comes, exactly once."""
    stop = guarded_stop()
    tail = store.tail(AuditQuery(tenant=tenant), poll_interval=0.05, stop=stop)
    newer = make_event(now_ms(), tenant=tenant)
    threading.Timer(0.2, load, (opensearch, layout, [newer])).start()
    assert ids(next(tail)) == [newer.id]
    late = make_event(newer.unix_ms - 5000, tenant=tenant)  # inside the 30 s lookback
    same_ms = make_event(newer.unix_ms, tenant=tenant)  # the same millisecond as one already seen
    load(opensearch, layout, [late, same_ms])
    assert ids(next(tail)) == newest_first([late, same_ms])
    extra = make_event(now_ms() + 5, tenant=tenant)
    load(opensearch, layout, [extra])
    assert ids(next(tail)) == [extra.id]  # nothing yielded before comes again
    stop.set()


@pytest.mark.opensearch
def test_tail_splits_a_large_catch_up_into_batches(opensearch, layout, tenant):
    """More new events than a batch holds arrive in several batches, older batch first, each newest first."""
    store = OpenSearchStore(opensearch, prefix=layout, export_batch_size=10)
    base = now_ms() - 1000
    events = [make_event(base + i, tenant=tenant) for i in range(25)]
    load(opensearch, layout, events)
    stop = guarded_stop()
    since = datetime.fromtimestamp(base / 1000, tz=timezone.utc)
    tail = store.tail(AuditQuery(tenant=tenant), since, poll_interval=0.05, stop=stop)
    batches = [ids(next(tail)) for _ in range(3)]
    stop.set()
    assert [len(batch) for batch in batches] == [10, 10, 5]
    assert [event_id for batch in reversed(batches) for event_id in batch] == newest_first(events)


# -- nothing set up, nothing reachable ---------------------------------------------------


@pytest.mark.opensearch
def test_missing_data_streams_give_empty_results(opensearch):
    """Before setup, every read answers 'nothing' instead of failing."""
    store = OpenSearchStore(opensearch, prefix=f"never-{uuid.uuid4().hex[:10]}")
    query = AuditQuery(tenant="acme")
    assert store.search(query).events == []
    assert store.search(query).next_cursor is None
    assert store.count(query) == 0
    assert store.get("acme", uuid7()) is None
    assert list(store.iterate(query)) == []
    stop = guarded_stop(0.5)
    assert (
        list(store.tail(query, datetime(2020, 1, 1, tzinfo=timezone.utc), poll_interval=0.05, stop=stop))
        == []
    )


def test_unreachable_opensearch_is_a_clear_error():
    """A refused connection raises OpenSearchStoreError naming what was attempted."""
    client = OpenSearch(["http://127.0.0.1:9"], max_retries=0, timeout=2)
    store = OpenSearchStore(client, prefix="audit")
    with pytest.raises(OpenSearchStoreError, match="cannot connect to OpenSearch to search audit events"):
        store.search(AuditQuery(tenant="acme"))
    with pytest.raises(OpenSearchStoreError, match="cannot connect to OpenSearch to count"):
        store.count(AuditQuery(tenant="acme"))
    with pytest.raises(OpenSearchStoreError, match="point in time") as raised:
        list(store.iterate(AuditQuery(tenant="acme")))
    assert isinstance(raised.value, AuditError)


def test_store_reads_the_prefix_pattern():
    """The store searches every tier's data stream of its prefix."""
    store = OpenSearchStore(OpenSearch([OPENSEARCH_URL]), prefix="acme-audit")
    assert store.index_pattern == "acme-audit-*"


@pytest.mark.opensearch
def test_from_settings_uses_the_settings_prefix_and_owns_its_client(opensearch, layout, tenant):
    """from_settings builds its own client (orjson, gzip) on the settings' prefix; close() closes it."""
    event = make_event(BASE_MS, tenant=tenant)
    load(opensearch, layout, [event])
    store = OpenSearchStore.from_settings(ConnectionSettings(urls=OPENSEARCH_URL, prefix=layout))
    try:
        assert store.index_pattern == f"{layout}-*"
        assert ids(store.search(AuditQuery(tenant=tenant)).events) == [event.id]
    finally:
        store.close()


class StubClient:
    """Answers every search with a canned answer or error (faults a healthy node cannot make on cue)."""

    def __init__(self, answer: Any = None, error: Exception | None = None) -> None:
        self.answer = answer
        self.error = error

    def search(self, **kwargs: Any) -> Any:
        if self.error is not None:
            raise self.error
        return self.answer

    def create_pit(self, **kwargs: Any) -> Any:
        return {"pit_id": "pit-1"}

    def delete_pit(self, **kwargs: Any) -> Any:
        return {}


def test_partial_shard_results_are_an_error_not_a_short_page():
    """An answer where a shard failed raises instead of silently missing records."""
    answer = {"_shards": {"failed": 1, "failures": [{"reason": {"type": "circuit_breaking_exception"}}]}}
    store = OpenSearchStore(StubClient(answer), prefix="audit")  # type: ignore[arg-type]
    with pytest.raises(OpenSearchStoreError, match=r"partial results.*circuit_breaking_exception"):
        store.search(AuditQuery(tenant="acme"))


def test_expired_point_in_time_says_the_reader_was_too_slow():
    """A PIT that expired between two export pages gives an error naming pit_keep_alive."""
    error = NotFoundError(404, "search_context_missing_exception", {})
    store = OpenSearchStore(StubClient(error=error), prefix="audit")  # type: ignore[arg-type]
    with pytest.raises(OpenSearchStoreError, match="pit_keep_alive=1m"):
        list(store.iterate(AuditQuery(tenant="acme")))


# -- the export of stored documents ----------------------------------------------------------


def _export_bytes(store: OpenSearchStore, query: AuditQuery, fmt: str) -> bytes:
    out = io.BytesIO()
    store.export(query, out, fmt)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.mark.opensearch
@pytest.mark.parametrize("slices", [1, 2, 3])
def test_csv_export_is_the_event_export_in_order(opensearch, layout, five_thousand, slices):
    """The CSV from stored documents (sliced or not) is byte for byte the CSV of the events, newest first."""
    tenant, events = five_thousand
    store = OpenSearchStore(opensearch, prefix=layout, export_batch_size=600, export_slices=slices)
    query = AuditQuery(tenant=tenant)
    expected = io.BytesIO()
    write_export(sorted(events, key=lambda e: (e.unix_ms, e.id), reverse=True), expected, "csv")
    assert _export_bytes(store, query, "csv") == expected.getvalue()


@pytest.mark.opensearch
@pytest.mark.parametrize("slices", [1, 2])
def test_ndjson_export_writes_the_documents_as_stored(opensearch, layout, five_thousand, slices):
    """NDJSON lines are the stored _source of each record, newest first, none missing or repeated."""
    tenant, events = five_thousand
    store = OpenSearchStore(opensearch, prefix=layout, export_batch_size=1000, export_slices=slices)
    lines = _export_bytes(store, AuditQuery(tenant=tenant), "ndjson").splitlines()
    documents = [json.loads(line) for line in lines]
    assert [doc["event"]["id"] for doc in documents] == newest_first(events)
    stored = opensearch.search(
        index=f"{layout}-*", body={"query": {"ids": {"values": [documents[0]["event"]["id"]]}}}
    )["hits"]["hits"][0]["_source"]
    assert documents[0] == stored


@pytest.mark.opensearch
def test_sliced_export_honours_filters_and_cursor(opensearch, layout, five_thousand):
    """A sliced export applies the filters and starts after the cursor, like iterate()."""
    tenant, events = five_thousand
    store = OpenSearchStore(opensearch, prefix=layout, export_batch_size=70, export_slices=4)
    start = datetime.fromtimestamp((BASE_MS + 100) / 1000, tz=timezone.utc)
    query = AuditQuery(tenant=tenant, start=start, end=start + timedelta(milliseconds=50))
    expected = newest_first([e for e in events if BASE_MS + 100 <= e.unix_ms < BASE_MS + 150])
    cursor = Cursor(next(e.unix_ms for e in events if e.id == expected[9]), expected[9])
    lines = _export_bytes(store, query.next_page(cursor), "ndjson").splitlines()
    assert [json.loads(line)["event"]["id"] for line in lines] == expected[10:]


@pytest.mark.opensearch
def test_a_closed_sliced_export_stops_its_readers_and_deletes_its_pit(opensearch, layout, five_thousand):
    """Closing a sliced export early ends its reader threads and deletes the point in time."""
    tenant, _ = five_thousand
    spy = SpyClient(opensearch)
    store = OpenSearchStore(spy, prefix=layout, export_batch_size=100, export_slices=3)  # type: ignore[arg-type]
    chunks = store.export_chunks(AuditQuery(tenant=tenant), "ndjson")
    next(chunks)
    chunks.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("audit-export-slice-")]
    assert spy.deleted == spy.created != []
    assert not live_pits(opensearch) & set(spy.created)
    assert spy.searches < 5000 // 100, "the readers stopped instead of reading everything"


@pytest.mark.opensearch
def test_a_failing_slice_fails_the_export(opensearch, layout, five_thousand):
    """An error in one slice's reader ends the export with that error, and the PIT is deleted."""
    tenant, _ = five_thousand

    class FailingSlice(SpyClient):
        def search(self, **kwargs: Any) -> Any:
            if kwargs["body"].get("slice", {}).get("id") == 1 and "search_after" in kwargs["body"]:
                raise TransportError(500, "search_phase_execution_exception", {})
            return super().search(**kwargs)

    spy = FailingSlice(opensearch)
    store = OpenSearchStore(spy, prefix=layout, export_batch_size=200, export_slices=2)  # type: ignore[arg-type]
    with pytest.raises(OpenSearchStoreError, match="export audit events"):
        _export_bytes(store, AuditQuery(tenant=tenant), "csv")
    assert spy.deleted == spy.created != []


@pytest.mark.opensearch
def test_bounded_count_stops_at_its_limit(opensearch, layout, five_thousand):
    """count_bounded() answers the limit and 'more' past it, and the exact count below it."""
    tenant, events = five_thousand
    store = OpenSearchStore(opensearch, prefix=layout)
    query = AuditQuery(tenant=tenant)
    assert store.count_bounded(query, limit=4_999) == BoundedCount(4_999, more=True)
    assert store.count_bounded(query, limit=5_000) == BoundedCount(5_000, more=False)
    assert store.count_bounded(query) == BoundedCount(len(events), more=False)
    assert store.count(query) == len(events)


@pytest.mark.opensearch
def test_backing_indices_are_sorted_newest_first(opensearch, layout):
    """The template sorts every backing index by @timestamp then event.id, both descending."""
    (index,) = [
        i["index_name"]
        for i in opensearch.indices.get_data_stream(name=f"{layout}-standard")["data_streams"][0]["indices"]
    ]
    settings = opensearch.indices.get_settings(index=index, params={"flat_settings": "true"})[index][
        "settings"
    ]
    assert settings["index.sort.field"] == ["@timestamp", "event.id"]
    assert settings["index.sort.order"] == ["desc", "desc"]
