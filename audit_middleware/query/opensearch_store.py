"""The ``AuditStore`` over OpenSearch: the ``{prefix}-*`` audit data streams.

Every request is a ``bool`` *filter* (no scoring) whose first clause scopes it to the
tenant: a ``term`` on ``organization.id`` (``NO_TENANT`` selects the records without
one), so a query can only ever see its own tenant's records. ``get`` is a search by
``ids`` under that scope, never a GET by id.

Free text becomes structured clauses whose operands are the user's words as plain
values, never ``query_string``: every whitespace-separated word must match, each as a
word prefix of the resource name or action label (``match_bool_prefix`` on the
``.text`` subfields), or as the start of the resource name, a user email, the action id
or label (``prefix`` on the keyword / ``.lower`` subfields). ``*``, ``OR``, quotes,
backslashes and ``field:value`` are characters, not syntax; a word without a letter or
digit has nothing to look for, and text made only of such words matches nothing.

The pattern ``{prefix}-*`` covers every tier's data stream; pick prefixes so that one
is not the start of another (``audit`` and ``audit-eu`` would overlap).

Results are newest first (``@timestamp`` then ``event.id``, both descending); the
backing indices are sorted the same way (``opensearch.templates``). A page asks the node
for its hits sorted by ``@timestamp`` alone: a sort on the index sort's first key lets
each segment stop at its first matches, which a keyword second key prevents (measured
4 ms against 1 ms of ``took`` for a tenant's first page at a million records). The
store orders the hits of one millisecond by ``event.id`` itself, and asks again, for
that millisecond only, when the page ends inside it (see ``_page_hits``).
``iterate()`` and the export pin a point in time so a long export sees one consistent
snapshot, and fall back to plain ``search_after`` on clusters without the point-in-time
API. The export reads the stored documents themselves, whole: ``_source`` includes
would send fewer bytes but cost the node more (it parses and filters every document:
measured twice the ``took`` of a page of 5,000), and the node is what an export waits
for. With ``export_slices`` above 1, reads that many slices of the point in time in
parallel threads, merged back into newest-first order.

Freshness: the store never forces a refresh. A record becomes visible to ``search``,
``count``, ``iterate`` and ``tail`` once its shard refreshes, i.e. up to
``index.refresh_interval`` (1 s by default) after the shipper delivered it; the shipper
itself batches for up to its ``flush_interval``. ``tail`` therefore looks back
``tail_lookback`` seconds on every poll, so records that become visible out of
timestamp order (several worker processes flushing at different moments) are still
delivered, exactly once.

>>> from audit_middleware.opensearch import ConnectionSettings
>>> store = OpenSearchStore.from_settings(ConnectionSettings.from_env())  # doctest: +SKIP
>>> page = store.search(AuditQuery.build("acme", since="7d", search="prod db"))  # doctest: +SKIP

This module is long because the query translation (filters, free text) and the three
read paths (page, point-in-time export, live tail) must agree on one sort and one scope.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import queue
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from opensearchpy import NotFoundError, OpenSearch, TransportError

from audit_middleware.errors import AuditError
from audit_middleware.model.event import AuditEvent
from audit_middleware.model.tenancy import (
    NO_TENANT_KEY,
    NoProject,
    ProjectSelector,
    TenantSelector,
    scope_key,
    tenant_key,
)
from audit_middleware.model.timestamps import unix_ms
from audit_middleware.opensearch import errors
from audit_middleware.opensearch.archive import restored_pattern
from audit_middleware.opensearch.client import build_client
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.opensearch.tiers import DEFAULT_PREFIX, validate_name
from audit_middleware.query.export import ExportFormat, document_chunks
from audit_middleware.query.model import (
    BOUNDED_COUNT_LIMIT,
    MAX_TEXT_LENGTH,
    AuditQuery,
    BoundedCount,
    Cursor,
    Page,
    QueryError,
    check_tenant,
)
from audit_middleware.query.store import AuditStore

__all__ = ["OpenSearchStore", "OpenSearchStoreError", "filter_query", "search_body"]

logger = logging.getLogger(__name__)

SORT: list[dict[str, Any]] = [
    # unmapped_type: a stray index matching the pattern without our mapping sorts instead of failing.
    {"@timestamp": {"order": "desc", "unmapped_type": "date"}},
    {"event.id": {"order": "desc", "unmapped_type": "keyword"}},
]
# A page's sort: the index sort's first key alone, so each segment stops early.
_TIME_SORT: list[dict[str, Any]] = [SORT[0]]
_SHOWN_ROOM = 8  # hits a cursor page asks for beyond its own: the cursor's millisecond, shown already
_ASCENDING: list[dict[str, Any]] = [
    {"@timestamp": {"order": "asc", "unmapped_type": "date"}},
    {"event.id": {"order": "asc", "unmapped_type": "keyword"}},
]
# Only what is read back: smaller answers parse faster. _shards/timed_out reveal partial results.
_FILTER_PATH = "pit_id,timed_out,_shards.failed,_shards.failures,hits.hits._source,hits.hits.sort"
_TOTAL_PATH = "timed_out,_shards.failed,_shards.failures,hits.total"
# A search over "{prefix}-*" before setup (or after the streams were deleted) matches nothing.
_MISSING_OK = {"ignore_unavailable": "true", "allow_no_indices": "true"}
# What a cluster without the point-in-time API (or with nothing to pin) answers to creating one.
_NO_PIT_STATUSES = frozenset({400, 404, 405, 501})
_EVENT_ID_LIMIT = 1024  # event.id is a keyword with ignore_above 1024: longer ids are never indexed
_SLICE_PAGES_AHEAD = 1  # pages a slice reader fetches ahead of the merge: memory stays bounded
_END = object()  # a slice reader's last item


class OpenSearchStoreError(AuditError):
    """OpenSearch could not answer a query; the message says why and what to check."""


def _fold_case(text: str) -> str:
    """Lowercase as Lucene's ``lowercase`` filter does: one code point at a time.

    Python's ``str.lower`` turns ``"İ"`` into two code points where Lucene yields ``"i"``;
    keeping such characters as they are lets the server's normalizer fold them the same
    way it folded the indexed value.
    """
    return "".join(lowered if len(lowered := char.lower()) == 1 else char for char in text)


def _words(text: str) -> list[str]:
    """The whitespace-separated words of ``text`` that hold a letter or digit, bounded, lowercased.

    A word of punctuation alone (``*``, ``"``, ``:``) has nothing to look for, as in the
    SQLite store's full-text index, which does not index such characters.
    """
    words = _fold_case(unicodedata.normalize("NFC", text)[:MAX_TEXT_LENGTH]).split()
    searchable = (word for word in words if any(unicodedata.category(char)[0] in "LN" for char in word))
    return list(dict.fromkeys(searchable))


def _word_clause(word: str) -> dict[str, Any]:
    """One search word as structured queries: it must start a word of a name, or an email or action."""
    return {
        "bool": {
            "should": [
                # "dat" finds "Prod Database"; "web-1" needs both tokens, the last as a prefix.
                {"match_bool_prefix": {"audit.resource.name.text": {"query": word, "operator": "and"}}},
                {"match_bool_prefix": {"audit.action.label.text": {"query": word, "operator": "and"}}},
                # The word as the start of a whole value ("ann@ex", "login_f", "prod.d").
                {"prefix": {"audit.resource.name.lower": {"value": word}}},
                {"prefix": {"user.email.lower": {"value": word}}},
                {"prefix": {"user.effective.email.lower": {"value": word}}},
                {"prefix": {"event.action": {"value": word}}},
                {"prefix": {"audit.action.label.lower": {"value": word}}},
            ],
            "minimum_should_match": 1,
        }
    }


def _text_clauses(text: str) -> list[dict[str, Any]]:
    """Free text: every word must match (each in any of the searched fields).

    Text without a single searchable word matches nothing.
    """
    words = _words(text)
    return [_word_clause(word) for word in words] if words else [{"match_none": {}}]


def _user_clause(user: str) -> dict[str, Any]:
    """A user id (exact) or email (case-insensitive), of the actor or of the identity acted as."""
    email = _fold_case(user)
    return {
        "bool": {
            "should": [
                {"term": {"user.id": user}},
                {"term": {"user.email.lower": email}},
                {"term": {"user.effective.id": user}},
                {"term": {"user.effective.email.lower": email}},
            ],
            "minimum_should_match": 1,
        }
    }


def _time_range(start_ms: int | None, end_ms: int | None) -> dict[str, Any] | None:
    bounds: dict[str, Any] = {}
    if start_ms is not None:
        bounds["gte"] = start_ms
    if end_ms is not None:
        bounds["lt"] = end_ms
    if not bounds:
        return None
    return {"range": {"@timestamp": {**bounds, "format": "epoch_millis"}}}


def _tenant_filter(tenant: TenantSelector) -> dict[str, Any]:
    """The tenant scope, on the stored key (``model.tenancy``); ``NO_TENANT`` selects records
    without ``organization.id`` (or with the no-tenant key, which no tenant id maps to)."""
    key = tenant_key(tenant)
    if key != NO_TENANT_KEY:
        return {"term": {"organization.id": key}}
    return {
        "bool": {
            "should": [
                {"term": {"organization.id": NO_TENANT_KEY}},
                {"bool": {"must_not": [{"exists": {"field": "organization.id"}}]}},
            ],
            "minimum_should_match": 1,
        }
    }


def _project_clause(projects: tuple[ProjectSelector, ...]) -> dict[str, Any]:
    """Any of ``projects`` (by stored key); ``NO_PROJECT`` stands for records without ``audit.project.id``."""
    named = [scope_key(project) for project in projects if not isinstance(project, NoProject)]
    should: list[dict[str, Any]] = []
    if len(named) == 1:
        should.append({"term": {"audit.project.id": named[0]}})
    elif named:
        should.append({"terms": {"audit.project.id": named}})
    if len(named) != len(projects):
        should.append({"bool": {"must_not": [{"exists": {"field": "audit.project.id"}}]}})
    return should[0] if len(should) == 1 else {"bool": {"should": should, "minimum_should_match": 1}}


def _filters(query: AuditQuery, *, start_ms: int | None = None) -> list[dict[str, Any]]:
    """The filter clauses of ``query``; ``start_ms`` raises the lower time bound (tail)."""
    clauses: list[dict[str, Any]] = [_tenant_filter(query.tenant)]
    if query.actions:
        clauses.append({"terms": {"event.action": list(query.actions)}})
    if query.resource_types:
        clauses.append({"terms": {"audit.resource.type": list(query.resource_types)}})
    if query.user:
        clauses.append(_user_clause(query.user))
    if query.project:
        clauses.append(_project_clause((query.project,)))
    if query.projects is not None:
        # an empty allow-list permits nothing
        clauses.append(_project_clause(query.projects) if query.projects else {"match_none": {}})
    if query.exclude_actions:
        clauses.append({"bool": {"must_not": [{"terms": {"event.action": list(query.exclude_actions)}}]}})
    if query.outcome:
        clauses.append({"term": {"event.outcome": query.outcome}})
    lower = query.start_ms
    if start_ms is not None:
        lower = start_ms if lower is None else max(lower, start_ms)
    time_range = _time_range(lower, query.end_ms)
    if time_range is not None:
        clauses.append(time_range)
    if query.text and query.text.strip():
        clauses.extend(_text_clauses(query.text))
    return clauses


def filter_query(query: AuditQuery) -> dict[str, Any]:
    """The ``query`` part of a request for ``query``: one ``bool`` of filters, tenant first.

    >>> filter_query(AuditQuery(tenant="acme", outcome="failure"))["bool"]["filter"]
    [{'term': {'organization.id': 'acme'}}, {'term': {'event.outcome': 'failure'}}]
    """
    return {"bool": {"filter": _filters(query)}}


def search_body(query: AuditQuery) -> dict[str, Any]:
    """The body of the ``_search`` request for one page of ``query``.

    Sorted by ``@timestamp`` alone (see the module docstring); after a cursor, from the
    cursor's own millisecond on, whose records earlier pages showed are left out by the
    store. Two hits more than the page size are asked for, and a few more after a
    cursor for those shown ones: one tells whether another page follows, the other
    whether the page ends inside a millisecond whose other records the answer may lack.
    """
    cursor = query.cursor
    if cursor is None:
        return _page_body(query, _TIME_SORT, query.page_size + 2, None)
    # the cursor's millisecond included: search_after one millisecond later
    return _page_body(query, _TIME_SORT, query.page_size + 2 + _SHOWN_ROOM, [cursor.unix_ms + 1])


def _two_key_body(query: AuditQuery) -> dict[str, Any]:
    """A page in the (``@timestamp``, ``event.id``) order asked of the node itself: slower, always exact."""
    cursor = query.cursor
    after = None if cursor is None else [cursor.unix_ms, cursor.event_id]
    return _page_body(query, SORT, query.page_size + 1, after)


def _page_body(
    query: AuditQuery, sort: list[dict[str, Any]], size: int, after: list[Any] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "query": filter_query(query),
        "sort": sort,
        "size": size,
        "track_total_hits": False,
    }
    if after is not None:
        body["search_after"] = after
    return body


def _millisecond_body(
    filters: list[dict[str, Any]], unix_ms: int, size: int, below: str | None
) -> dict[str, Any]:
    """The records of one millisecond, by ``event.id`` descending (those below ``below`` only)."""
    moment = {"gte": unix_ms, "lte": unix_ms, "format": "epoch_millis"}
    clauses = [*filters, {"range": {"@timestamp": moment}}]
    if below is not None:
        clauses.append({"range": {"event.id": {"lt": below}}})
    return {"query": {"bool": {"filter": clauses}}, "sort": SORT, "size": size, "track_total_hits": False}


def _page_key(hit: Mapping[str, Any]) -> tuple[int, str]:
    """(unix ms, event id) of a hit sorted by ``@timestamp`` alone or by both keys."""
    event = hit.get("_source", {}).get("event") or {}
    return int(hit["sort"][0]), str(event.get("id") or "")


def _checked(answer: Mapping[str, Any]) -> Mapping[str, Any]:
    """``answer``, unless some shards failed or timed out (partial results are refused)."""
    if answer.get("timed_out") or answer.get("_shards", {}).get("failed"):
        failures = answer.get("_shards", {}).get("failures") or []
        reasons = "; ".join(str(failure.get("reason", failure)) for failure in failures[:3])
        raise OpenSearchStoreError(
            "OpenSearch answered with partial results (some shards failed or timed out)"
            + (f": {reasons}" if reasons else "")
            + "; an audit query does not return incomplete data, retry when the cluster is healthy"
        )
    return answer


def _hits(answer: Mapping[str, Any]) -> list[dict[str, Any]]:
    hits: list[dict[str, Any]] = _checked(answer).get("hits", {}).get("hits", [])
    return hits


def _sort_key(hit: Mapping[str, Any]) -> tuple[int, str]:
    unix_ms, event_id = hit["sort"]
    return int(unix_ms), str(event_id)


def _distinct(hits: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """``hits`` in order without repeats: the same event twice (re-delivered after a rollover) once."""
    previous: tuple[int, str] | None = None
    for hit in hits:
        key = _sort_key(hit)
        if key != previous:
            yield hit
        previous = key


def _seen(hits: list[dict[str, Any]]) -> dict[str, int]:
    """Event id -> unix ms of ``hits``."""
    return {event_id: unix_ms for unix_ms, event_id in map(_sort_key, hits)}


class OpenSearchStore(AuditStore):
    """Audit records in the ``{prefix}-*`` data streams of an OpenSearch cluster.

    ``client`` is an ``opensearchpy.OpenSearch`` client (``build_client`` makes one from
    settings, or use ``from_settings``). ``export_batch_size`` is the page size of
    ``iterate`` and the export; ``export_slices`` how many slices of the point in time
    the export reads in parallel (1: one after the other; more pays off when the node
    has cores to spare, see docs/benchmarks.md); ``pit_keep_alive`` how long a point in
    time survives between two export pages (a slower consumer gets a clear error);
    ``tail_lookback`` how many seconds of
    late-visible records ``tail`` still picks up. ``include_restored`` also searches the
    archives restored from snapshots (``opensearch.archive``: ``restored-{prefix}-*``),
    which the live trail never includes.

    >>> from opensearchpy import OpenSearch
    >>> store = OpenSearchStore(OpenSearch(["http://127.0.0.1:9200"]), prefix="audit")
    >>> store.index_pattern
    'audit-*'
    """

    def __init__(
        self,
        client: OpenSearch,
        *,
        prefix: str = DEFAULT_PREFIX,
        export_batch_size: int = 1000,
        export_slices: int = 2,
        pit_keep_alive: str = "1m",
        tail_lookback: float = 30.0,
        include_restored: bool = False,
    ) -> None:
        if not 1 <= export_batch_size <= 10_000:
            raise QueryError(f"export_batch_size must be between 1 and 10000, not {export_batch_size}")
        if not 1 <= export_slices <= 64:
            raise QueryError(f"export_slices must be between 1 and 64, not {export_slices}")
        if tail_lookback < 0:
            raise QueryError(f"tail_lookback must be 0 or more seconds, not {tail_lookback}")
        self._client = client
        self._prefix = validate_name(prefix, "prefix")
        self._batch = export_batch_size
        self._slices = export_slices
        self._keep_alive = pit_keep_alive
        self._lookback_ms = int(tail_lookback * 1000)
        self._include_restored = include_restored
        self._owns_client = False

    @classmethod
    def from_settings(cls, settings: ConnectionSettings, **options: Any) -> OpenSearchStore:
        """A store with its own client for ``settings`` (closed by ``close()``)."""
        store = cls(build_client(settings), prefix=settings.prefix, **options)
        store._owns_client = True
        return store

    @property
    def index_pattern(self) -> str:
        """What every request searches: all audit data streams of the prefix, every tier
        (and the restored archives, with ``include_restored``)."""
        live = f"{self._prefix}-*"
        return f"{live},{restored_pattern(self._prefix)}" if self._include_restored else live

    def close(self) -> None:
        """Close the client if this store created it."""
        if self._owns_client:
            self._client.close()

    # -- the contract -------------------------------------------------------------------

    def search(self, query: AuditQuery) -> Page:
        """One page of matching events, newest first; ``next_cursor`` is None on the last page."""
        hits = self._page_hits(query)
        page, more = hits[: query.page_size], len(hits) > query.page_size
        events = [AuditEvent.from_document(hit["_source"]) for hit in page]
        cursor = Cursor(*_page_key(page[-1])).encode() if more and page else None
        return Page(events=events, next_cursor=cursor)

    def _page_hits(self, query: AuditQuery) -> list[dict[str, Any]]:
        """The first ``page_size + 1`` hits of ``query`` in (``@timestamp``, ``event.id``)
        descending order, as one sort on both keys would give them.

        One request sorted by time alone (``search_body``), its hits ordered here by both
        keys, those an earlier page showed (the cursor's millisecond, up to the cursor)
        left out. The answer holds every record newer than its oldest millisecond, so the
        first ``n`` are exact unless the ``n``-th is of that millisecond: then that
        millisecond, which may hold records the answer lacks, is asked for on its own.
        When the shown records left too few, the node is asked in the two-key order.
        """
        wanted = query.page_size + 1
        body = search_body(query)
        answer = _hits(self._request(body, "search audit events"))
        hits = sorted(answer, key=_page_key, reverse=True)
        cursor = query.cursor
        if cursor is not None:
            after = (cursor.unix_ms, cursor.event_id)
            hits = [hit for hit in hits if _page_key(hit) < after]
        if len(answer) < body["size"]:  # everything that matches is here
            return hits[:wanted]
        if len(hits) < wanted:  # records shown already took the room
            return _hits(self._request(_two_key_body(query), "search audit events"))
        boundary = _page_key(hits[wanted - 1])[0]
        if boundary > min(int(hit["sort"][0]) for hit in answer):
            return hits[:wanted]
        newer = [hit for hit in hits[:wanted] if _page_key(hit)[0] > boundary]
        below = cursor.event_id if cursor is not None and cursor.unix_ms == boundary else None
        same = _millisecond_body(_filters(query), boundary, wanted - len(newer), below)
        return newer + _hits(self._request(same, "search audit events"))

    def get(self, tenant: TenantSelector, event_id: str) -> AuditEvent | None:
        """The event ``event_id`` of ``tenant``; None when absent or another tenant's.

        A search by ``ids`` under the tenant filter, never a GET by id, which would
        return the document whoever it belongs to.
        """
        check_tenant(tenant)
        if not isinstance(event_id, str) or not event_id or len(event_id) > _EVENT_ID_LIMIT:
            return None
        body = {
            "query": {"bool": {"filter": [_tenant_filter(tenant), {"ids": {"values": [event_id]}}]}},
            "size": 1,
            "sort": SORT,
            "track_total_hits": False,
        }
        hits = _hits(self._request(body, "read an audit event by id"))
        return AuditEvent.from_document(hits[0]["_source"]) if hits else None

    def count(self, query: AuditQuery) -> int:
        """How many events match, exactly (``_count``; page size and cursor are ignored)."""
        with self._explained("count audit events"):
            try:
                answer = self._client.count(
                    index=self.index_pattern, body={"query": filter_query(query)}, params=dict(_MISSING_OK)
                )
            except NotFoundError:
                return 0
        if answer.get("_shards", {}).get("failed"):
            raise OpenSearchStoreError("OpenSearch could not count on every shard; retry when it is healthy")
        return int(answer["count"])

    def count_bounded(self, query: AuditQuery, limit: int = BOUNDED_COUNT_LIMIT) -> BoundedCount:
        """How many events match, exact up to ``limit``: the node stops counting one past it."""
        if limit < 1:
            raise QueryError(f"a bounded count needs a limit of at least 1, not {limit}")
        body = {"query": filter_query(query), "size": 0, "track_total_hits": limit + 1}
        answer = _checked(self._request(body, "count audit events", filter_path=_TOTAL_PATH))
        total = answer.get("hits", {}).get("total") or {}
        value = int(total.get("value", 0))
        if value > limit or total.get("relation") == "gte":
            return BoundedCount(limit, more=True)
        return BoundedCount(value, more=False)

    def export_chunks(
        self,
        query: AuditQuery,
        format: ExportFormat = "csv",
        *,
        bom: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[bytes]:
        """Every matching event as export chunks, straight from the stored documents.

        CSV rows are made from each stored document (``document_csv_row``); NDJSON writes
        each document as stored. The snapshot is taken by this call, as for ``iterate``; with
        ``export_slices`` above 1 its slices are read in parallel and merged, newest first.
        """
        if format not in ("csv", "ndjson"):
            return document_chunks((), format)  # raises the format error before a PIT is opened
        hits = self._exported_hits(query, self._open_pit())
        return document_chunks((hit["_source"] for hit in hits), format, bom=bom, progress=progress)

    def iterate(self, query: AuditQuery) -> Iterator[AuditEvent]:
        """Every matching event, newest first, ``export_batch_size`` at a time.

        The snapshot is taken by this call: a point in time pins what exists now, so an
        export that takes an hour shows neither records written meanwhile nor gaps
        from rollovers. ``page_size`` is ignored; a ``cursor`` starts after that event.
        The point in time is deleted when the iteration ends, is closed or fails (an
        iterator dropped before its first item leaves it to expire after
        ``pit_keep_alive``). Without the point-in-time API (older clusters,
        Serverless) pages follow with ``search_after`` alone, and records arriving
        meanwhile may or may not be included.
        """
        return self._export(query, self._open_pit())

    def tail(
        self,
        query: AuditQuery,
        since: datetime | None = None,
        *,
        poll_interval: float = 1.0,
        stop: threading.Event | None = None,
    ) -> Iterator[list[AuditEvent]]:
        """Live: every ``poll_interval`` seconds, the events not yet yielded, newest first.

        The starting point is taken by this call. With ``since``, the matching events
        at or after it come first (oldest batch first, each newest first); without it,
        only events that become visible after the call. Each poll then asks for events
        at or after the newest one seen minus ``tail_lookback``, excluding the ids
        already yielded in that window, so an event that becomes visible late (the
        refresh interval, one worker flushing after another) still arrives, and none
        arrives twice. An event whose ``@timestamp`` is older than that window when it
        becomes visible (a spool replayed after an outage) is not tailed; search and
        export find it. Polls that find nothing yield nothing; it ends when ``stop`` is set.
        """
        seen: dict[str, int] = {}  # event id -> unix ms, for ids inside the lookback window
        if since is not None:
            if since.utcoffset() is None:
                raise QueryError("since must be a timezone-aware datetime")
            floor = unix_ms(since)
        else:
            # What is visible now is history, not news: remember it as seen, unyielded.
            floor = int(time.time() * 1000) - self._lookback_ms
            for hits in self._poll(query, floor, seen):
                seen.update(_seen(hits))
        return self._follow(query, floor, seen, poll_interval, stop or threading.Event())

    # -- requests ---------------------------------------------------------------------

    def _follow(
        self, query: AuditQuery, floor: int, seen: dict[str, int], poll_interval: float, stop: threading.Event
    ) -> Iterator[list[AuditEvent]]:
        while not stop.is_set():
            newest = floor
            for hits in self._poll(query, floor, seen):
                seen.update(_seen(hits))
                newest = max(newest, _sort_key(hits[-1])[0])
                yield [AuditEvent.from_document(hit["_source"]) for hit in reversed(hits)]
            floor = max(floor, newest - self._lookback_ms)
            seen = {event_id: unix_ms for event_id, unix_ms in seen.items() if unix_ms >= floor}
            stop.wait(poll_interval)

    def _export(self, query: AuditQuery, pit_id: str | None) -> Iterator[AuditEvent]:
        try:
            for hit in _distinct(hit for page in self._hit_pages(query, pit_id) for hit in page):
                yield AuditEvent.from_document(hit["_source"])
        finally:
            if pit_id is not None:
                self._close_pit(pit_id)

    def _exported_hits(self, query: AuditQuery, pit_id: str | None) -> Iterator[dict[str, Any]]:
        """The export's hits, newest first: sliced and merged when a point in time allows it."""
        try:
            if pit_id is None or self._slices == 1:
                yield from _distinct(hit for page in self._hit_pages(query, pit_id) for hit in page)
            else:
                yield from _distinct(self._merged_slices(query, pit_id))
        finally:
            if pit_id is not None:
                self._close_pit(pit_id)

    def _merged_slices(self, query: AuditQuery, pit_id: str) -> Iterator[dict[str, Any]]:
        """The hits of ``export_slices`` slices of the point in time, each read by its own thread.

        Every slice is newest first, so merging them by sort key keeps that order. Each
        reader runs at most ``_SLICE_PAGES_AHEAD`` pages ahead of the merge; when the
        merge stops (the consumer closed the export, or a reader failed) the readers stop
        at their next page.
        """
        stop = threading.Event()
        inboxes: list[queue.Queue[Any]] = [queue.Queue(_SLICE_PAGES_AHEAD) for _ in range(self._slices)]

        def hand_over(inbox: queue.Queue[Any], item: Any) -> bool:
            while not stop.is_set():
                with contextlib.suppress(queue.Full):
                    inbox.put(item, timeout=0.1)
                    return True
            return False

        def read(number: int) -> None:
            # By a doc-values field: the default (_id) walks every id term on every page.
            slice_ = {"id": number, "max": self._slices, "field": "@timestamp"}
            try:
                for page in self._hit_pages(query, pit_id, slice_=slice_):
                    if not hand_over(inboxes[number], page):
                        return
                hand_over(inboxes[number], _END)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
                hand_over(inboxes[number], exc)

        def received(inbox: queue.Queue[Any]) -> Iterator[dict[str, Any]]:
            while (item := inbox.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield from item

        readers = [
            threading.Thread(target=read, args=(number,), name=f"audit-export-slice-{number}", daemon=True)
            for number in range(self._slices)
        ]
        for reader in readers:
            reader.start()
        try:
            yield from heapq.merge(*map(received, inboxes), key=_sort_key, reverse=True)
        finally:
            stop.set()
            for reader in readers:
                reader.join()

    def _poll(self, query: AuditQuery, floor: int, seen: Mapping[str, int]) -> Iterator[list[dict[str, Any]]]:
        """The unseen hits at or after ``floor``, oldest first, a batch at a time."""
        bool_query: dict[str, Any] = {"filter": _filters(query, start_ms=floor)}
        if seen:
            bool_query["must_not"] = [{"ids": {"values": list(seen)}}]
        body: dict[str, Any] = {
            "query": {"bool": bool_query},
            "sort": _ASCENDING,
            "size": self._batch,
            "track_total_hits": False,
        }
        while hits := _hits(self._request(body, "poll for new audit events")):
            yield hits
            if len(hits) < self._batch:
                return
            body["search_after"] = list(_sort_key(hits[-1]))

    def _hit_pages(
        self,
        query: AuditQuery,
        pit_id: str | None,
        *,
        slice_: dict[str, Any] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``export_batch_size`` hits, newest first (of one slice, with ``slice_``)."""
        body: dict[str, Any] = {
            "query": filter_query(query),
            "sort": SORT,
            "size": self._batch,
            "track_total_hits": False,
        }
        if slice_ is not None:
            body["slice"] = slice_
        if query.cursor is not None:
            body["search_after"] = [query.cursor.unix_ms, query.cursor.event_id]
        while True:
            if pit_id is not None:
                body["pit"] = {"id": pit_id, "keep_alive": self._keep_alive}
            answer = self._request(body, "export audit events", pinned=pit_id is not None)
            # The id may change from page to page: always continue with the latest.
            pit_id = answer.get("pit_id") or pit_id
            hits = _hits(answer)
            if hits:
                yield hits
            if len(hits) < self._batch:
                return
            body["search_after"] = list(_sort_key(hits[-1]))

    def _request(
        self, body: dict[str, Any], what: str, *, pinned: bool = False, filter_path: str = _FILTER_PATH
    ) -> dict[str, Any]:
        """One ``_search``; a pattern matching no data stream answers no hits."""
        with self._explained(what, pinned=pinned):
            if pinned:  # a point-in-time search names no index: the PIT holds them
                answer: dict[str, Any] = self._client.search(body=body, params={"filter_path": filter_path})
                return answer
            try:
                answer = self._client.search(
                    index=self.index_pattern, body=body, params={**_MISSING_OK, "filter_path": filter_path}
                )
            except NotFoundError:
                return {}  # the data streams went away between resolving the pattern and searching
        return answer

    def _open_pit(self) -> str | None:
        """A point in time over the audit streams, or None where the API or the streams are missing."""
        with self._explained("open a point in time for the export"):
            try:
                answer = self._client.create_pit(
                    index=self.index_pattern, params={"keep_alive": self._keep_alive}
                )
            except TransportError as exc:
                # Connection errors have no numeric status and are not in the set.
                if exc.status_code not in _NO_PIT_STATUSES:
                    raise
                # Also what 2.x answers when no index matches yet: paging without a PIT finds nothing.
                logger.info("no point in time (%s): exporting with search_after alone", errors.reason(exc))
                return None
        pit_id = answer.get("pit_id")
        return str(pit_id) if pit_id else None

    def _close_pit(self, pit_id: str) -> None:
        try:
            self._client.delete_pit(body={"pit_id": [pit_id]})
        except TransportError as exc:  # it expires by itself after keep_alive
            logger.warning("could not delete point in time (it expires in %s): %s", self._keep_alive, exc)

    @contextlib.contextmanager
    def _explained(self, what: str, *, pinned: bool = False) -> Iterator[None]:
        """Turn client errors into one ``OpenSearchStoreError`` saying what failed and why."""
        try:
            yield
        except NotFoundError as exc:
            if not pinned:
                raise OpenSearchStoreError(errors.describe(exc, what)) from exc
            raise OpenSearchStoreError(
                f"the export's point in time expired or its indices were deleted ({errors.reason(exc)}): the "
                f"reader paused longer than pit_keep_alive={self._keep_alive} between pages"
            ) from exc
        except TransportError as exc:
            permissions = f"reading audit records needs the read permission on {self.index_pattern}"
            raise OpenSearchStoreError(errors.describe(exc, what, permissions=permissions)) from exc
