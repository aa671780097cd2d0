"""The bundled Dashboards objects against the real node: fields, searches, charts and controls.

``audit-middleware setup --dashboards-url`` runs for real against the local node (ISM,
templates, data streams); only the Dashboards HTTP API is mocked, since no Dashboards
server can run here. A scenario of real audit events then goes through the real
OpenSearch sink, and every saved search, visualization and filter control is run on
the node as Dashboards would run it (the query ``buildOpenSearchQuery`` builds: Lucene as
``query_string``, filters as query DSL, the time range as a ``range`` filter); each must
return the counts the scenario implies, computed here from the events themselves.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pytest
import responses
from click.testing import CliRunner

from audit_middleware.cli import main
from audit_middleware.model.actions import CATALOG, Action
from audit_middleware.model.event import (
    BUILTIN_RESOURCE_TYPES,
    Actor,
    AuditEvent,
    ChangeSet,
    RequestFacts,
    Resource,
    Scope,
)
from audit_middleware.model.ids import uuid7
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.opensearch.dashboards import bundle, fields, structure
from audit_middleware.opensearch.dashboards.importer import BULK_GET_PATH, IMPORT_PATH
from audit_middleware.sinks.opensearch.shipper import ShipperOptions
from audit_middleware.sinks.opensearch.sink import OpenSearchSink
from tests.conftest import OPENSEARCH_URL
from tests.integration.layout import remove_layout

pytestmark = pytest.mark.opensearch

DASHBOARDS = "http://dashboards.test:5601"
MINUTE = 60_000
DAY = 24 * 60 * MINUTE
INTERVAL = 30 * MINUTE  # what Dashboards' "auto" interval picks for 24 hours
ROLE_GRANTED = Action("role.granted", "Role Granted", ("iam",), ("admin",), "team")  # an app's own action
CLEAR_ENV = dict.fromkeys(
    (
        "AUDIT_OPENSEARCH_URL",
        "AUDIT_OPENSEARCH_USERNAME",
        "AUDIT_OPENSEARCH_PASSWORD",
        "AUDIT_OPENSEARCH_PREFIX",
        "AUDIT_DASHBOARDS_URL",
        "AUDIT_DASHBOARDS_USERNAME",
        "AUDIT_DASHBOARDS_PASSWORD",
        "AUDIT_DASHBOARDS_TENANT",
    ),
    "",
)


@dataclass(frozen=True)
class Person:
    actor: Actor
    ip: str
    agent: str


ALICE = Person(
    Actor("u-1", "alice", "alice@acme.example"), "198.51.100.10", "Mozilla/5.0 (X11; Linux x86_64)"
)
BOB = Person(Actor("u-2", "bob", "bob@acme.example"), "192.0.2.44", "curl/8.11.0")
ERIN = Person(Actor("u-3", "erin", "erin@globex.example"), "2001:db8::7", "console-cli/2.4")
MALLORY = Person(Actor(name="admin"), "203.0.113.66", "python-requests/2.32")
ACME, GLOBEX = Scope("acme", "ACME Corp"), Scope("globex", "Globex")


def scenario(now_ms: int) -> list[AuditEvent]:
    """A day of a cloud console, plus older entries the 24-hour range must leave out."""
    events: list[AuditEvent] = []

    def add(
        minutes_ago: int,
        who: Person,
        action: str | Action,
        resource: Resource | None = None,
        *,
        tenant: Scope = ACME,
        outcome: str | None = None,
        changes: ChangeSet | None = None,
    ) -> None:
        found = action if isinstance(action, Action) else CATALOG.get(action)
        unix_ms = now_ms - minutes_ago * MINUTE
        events.append(
            AuditEvent(
                id=uuid7(unix_ms),
                unix_ms=unix_ms,
                action=found,
                actor=who.actor,
                outcome=outcome or found.default_outcome,  # type: ignore[arg-type]
                resource=resource,
                changes=changes,
                tenant=tenant,
                request=RequestFacts(method="POST", path="/console", client_ip=who.ip, user_agent=who.agent),
            )
        )

    session = Resource("session")
    add(1400, ALICE, "login", session)
    add(1390, BOB, "login", session)
    for minutes in (1300, 1299, 1298):
        add(minutes, MALLORY, "login_failed")
    add(1200, BOB, "login_failed")
    add(1100, ERIN, "login", tenant=GLOBEX, outcome="failure")
    add(1000, ALICE, "create", Resource("pod", "p-1", "web-1"))
    add(
        900,
        ALICE,
        "update",
        Resource("virtual_machine", "vm-1", "db-1"),
        changes=ChangeSet({"cpus": 2}, {"cpus": 4}, ("cpus",)),
    )
    add(800, ALICE, "delete", Resource("pod", "p-1", "web-1"))
    add(790, BOB, "delete", Resource("storage", "vol-1", "backups"))
    add(700, BOB, "start", Resource("pod", "p-2", "web-2"))
    add(650, BOB, "stop", Resource("pod", "p-2", "web-2"))
    add(600, BOB, "restart", Resource("pod", "p-3", "web-3"))
    add(500, ERIN, "token_created", Resource("api_token", "t-1", "ci"), tenant=GLOBEX)
    add(450, ERIN, "token_revoked", Resource("api_token", "t-1", "ci"), tenant=GLOBEX)
    add(400, ERIN, "ssh_key_added", Resource("ssh_key", "k-1", "laptop"), tenant=GLOBEX)
    add(350, ERIN, "ssh_key_deleted", Resource("ssh_key", "k-1", "laptop"), tenant=GLOBEX)
    add(300, ALICE, "create", Resource("ssh_key", "k-2", "deploy"))
    add(250, ALICE, "permissions_changed", Resource("member", "u-2", "bob"))
    add(240, ALICE, "permissions_changed", Resource("member", "u-3", "erin"))
    add(230, BOB, ROLE_GRANTED, Resource("member", "u-1", "alice"))
    add(200, ALICE, "invite_sent", Resource("invite", "i-1", "dave@acme.example"))
    add(150, ALICE, "member_removed", Resource("member", "u-9", "carol"))
    add(100, ALICE, "create", Resource("project", "pr-1", "Shop"))
    add(50, ALICE, "audit_viewed", Resource("audit_log"))
    add(10, ALICE, "logout", session)
    # Older than the dashboard's 24 hours.
    add(3 * 1440, MALLORY, "login_failed")
    add(3 * 1440 + 1, MALLORY, "login_failed")
    add(3 * 1440 + 2, ALICE, "delete", Resource("pod", "p-0", "old-1"))
    return events


@dataclass
class Layout:
    prefix: str
    now_ms: int
    events: list[AuditEvent]
    items: list[dict[str, Any]]
    first_output: str
    uploaded: bytes

    @property
    def window(self) -> list[AuditEvent]:
        """The events inside the dashboard's time range (the last 24 hours)."""
        return [e for e in self.events if e.unix_ms >= self.now_ms - DAY]

    def item(self, title: str) -> dict[str, Any]:
        return next(o for o in self.items if o["attributes"]["title"] == f"{title} [{self.prefix}]")


def _mock_dashboards(mock: responses.RequestsMock, stored: dict[tuple[str, str], dict[str, Any]]) -> None:
    """A Dashboards saved-objects API keeping what it is sent in ``stored``."""

    def bulk_get(request: Any) -> tuple[int, dict[str, str], str]:
        answers = [
            stored.get((w["type"], w["id"]), {**w, "error": {"statusCode": 404, "message": "Not Found"}})
            for w in json.loads(request.body)
        ]
        return 200, {}, json.dumps({"saved_objects": answers})

    def import_(request: Any) -> tuple[int, dict[str, str], str]:
        content = request.body.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]
        results = []
        for line in content.decode().splitlines():
            item = json.loads(line)
            key = (item["type"], item["id"])
            results.append(
                {"type": item["type"], "id": item["id"], **({"overwrite": True} if key in stored else {})}
            )
            stored[key] = item
        mock.calls_content.append(content)  # type: ignore[attr-defined]
        return 200, {}, json.dumps({"success": True, "successCount": len(results), "successResults": results})

    mock.add_callback(responses.POST, f"{DASHBOARDS}{BULK_GET_PATH}", callback=bulk_get)
    mock.add_callback(responses.POST, f"{DASHBOARDS}{IMPORT_PATH}", callback=import_)


def _setup(prefix: str, stored: dict[tuple[str, str], dict[str, Any]]) -> tuple[str, list[bytes]]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.calls_content = []  # type: ignore[attr-defined]
        _mock_dashboards(mock, stored)
        result = CliRunner().invoke(
            main,
            [
                "setup",
                "--url",
                OPENSEARCH_URL,
                "--prefix",
                prefix,
                "--replicas",
                "0",
                "--skip-ism",
                "--dashboards-url",
                DASHBOARDS,
            ],
            env=CLEAR_ENV,
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        return result.output, list(mock.calls_content)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def stored_objects() -> dict[tuple[str, str], dict[str, Any]]:
    """What the mocked Dashboards holds after the first setup."""
    return {}


@pytest.fixture(scope="module")
def layout(opensearch: Any, tmp_path_factory: pytest.TempPathFactory, stored_objects) -> Iterator[Layout]:
    """setup with --dashboards-url on a fresh prefix, then the scenario through the real sink."""
    prefix = f"dash-{uuid.uuid4().hex[:10]}"
    try:
        output, uploads = _setup(prefix, stored_objects)
        now_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
        events = scenario(now_ms)
        sink = OpenSearchSink(
            settings=ConnectionSettings(urls=(OPENSEARCH_URL,), prefix=prefix, timeout=10.0),
            state_dir=tmp_path_factory.mktemp("sink"),
            options=ShipperOptions(flush_interval=0.1),
        )
        for event in events:
            sink.emit(event)
        assert sink.flush(timeout=60)
        sink.close()
        assert sink.status()["delivered"] == len(events)
        opensearch.indices.refresh(index=f"{prefix}-*")
        yield Layout(prefix, now_ms, events, bundle.saved_objects(prefix), output, uploads[0])
    finally:
        remove_layout(opensearch, prefix)


# --- what Dashboards would send (src/plugins/data/common/opensearch_query) --------------------


def _source(item: dict[str, Any]) -> dict[str, Any]:
    return json.loads(item["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])


def _sources(layout: Layout, item: dict[str, Any]) -> list[dict[str, Any]]:
    """The search source of ``item`` and, for a chart built on a saved search, that search's first."""
    chain = [_source(item)]
    for ref in item["references"]:
        if ref["name"] == item["attributes"].get("savedSearchRefName"):
            chain.insert(0, _source(next(o for o in layout.items if o["id"] == ref["id"])))
    return chain


def dashboards_query(
    layout: Layout,
    sources: list[dict[str, Any]],
    extra_filters: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """buildOpenSearchQuery: Lucene queries as query_string, enabled filters, the time range."""
    must: list[dict[str, Any]] = []
    filters: list[dict[str, Any]] = []
    must_not: list[dict[str, Any]] = []
    for source in sources:
        text = source["query"]["query"]
        # luceneStringToDsl, then decorateQuery with the default query:queryString:options.
        must.append(
            {"query_string": {"query": text, "analyze_wildcard": True, "time_zone": "UTC"}}
            if text.strip()
            else {"match_all": {}}
        )
        for item in source["filter"]:
            if not item["meta"]["disabled"]:
                (must_not if item["meta"]["negate"] else filters).append(item["query"])
    filters.extend(extra_filters)
    start = datetime.fromtimestamp((layout.now_ms - DAY) / 1000, tz=timezone.utc).isoformat()
    end = datetime.fromtimestamp((layout.now_ms + MINUTE) / 1000, tz=timezone.utc).isoformat()
    filters.append(
        {"range": {"@timestamp": {"gte": start, "lte": end, "format": "strict_date_optional_time"}}}
    )
    return {"bool": {"must": must, "filter": filters, "should": [], "must_not": must_not}}


def _count(opensearch: Any, layout: Layout, query: dict[str, Any]) -> int:
    return int(opensearch.count(index=f"{layout.prefix}-*", body={"query": query})["count"])


def _aggs(opensearch: Any, layout: Layout, query: dict[str, Any], aggs: dict[str, Any]) -> dict[str, Any]:
    answer = opensearch.search(index=f"{layout.prefix}-*", body={"size": 0, "query": query, "aggs": aggs})
    return answer["aggregations"]


def _bucket_agg(agg: dict[str, Any]) -> dict[str, Any]:
    """The request part of one visState bucket aggregation (terms by count, or a date histogram)."""
    params = agg["params"]
    if agg["type"] == "terms":
        return {
            "terms": {"field": params["field"], "order": {"_count": params["order"]}, "size": params["size"]}
        }
    assert params["interval"] == "auto"
    return {
        "date_histogram": {
            "field": params["field"],
            "fixed_interval": f"{INTERVAL // MINUTE}m",
            "time_zone": "UTC",
            "min_doc_count": params["min_doc_count"],
        }
    }


def _nest(buckets: list[dict[str, Any]]) -> dict[str, Any]:
    """visState bucket aggregations nested in order, as Dashboards requests them."""
    outer: dict[str, Any] = {}
    for agg in reversed(buckets):
        request = _bucket_agg(agg)
        if outer:
            request["aggs"] = outer
        outer = {agg["id"]: request}
    return outer


def _flatten(result: dict[str, Any], ids: list[str]) -> Counter[tuple[Any, ...]]:
    """Leaf doc counts by the tuple of bucket keys."""
    counts: Counter[tuple[Any, ...]] = Counter()

    def walk(node: dict[str, Any], depth: int, keys: tuple[Any, ...]) -> None:
        for bucket in node[ids[depth]]["buckets"]:
            # A date histogram's key is the bucket start in epoch ms; a terms key is the value.
            key = bucket["key"]
            if depth + 1 == len(ids):
                counts[(*keys, key)] = bucket["doc_count"]
            else:
                walk(bucket, depth + 1, (*keys, key))

    walk(result, 0, ())
    return counts


# --- the scenario's answers ------------------------------------------------------------------


def _is_failed_login(e: AuditEvent) -> bool:
    return e.action.id in ("login", "login_failed") and e.outcome == "failure"


def _type_is(kind: str) -> Callable[[AuditEvent], bool]:
    return lambda e: e.resource is not None and e.resource.type == kind


EXPECTED: dict[str, Callable[[AuditEvent], bool]] = {
    "Audit: all entries": lambda e: True,
    "Audit: failed logins": _is_failed_login,
    "Audit: deletions": lambda e: "deletion" in e.action.type,
    "Audit: permission changes": lambda e: (
        e.action.id == "permissions_changed" or ("iam" in e.action.category and "admin" in e.action.type)
    ),
    "Audit: API token events": lambda e: (
        e.action.id in ("token_created", "token_revoked") or _type_is("api_token")(e)
    ),
    "Audit: SSH key events": lambda e: (
        e.action.id in ("ssh_key_added", "ssh_key_deleted") or _type_is("ssh_key")(e)
    ),
    **{f"Audit: {label} entries": _type_is(kind) for kind, label in BUILTIN_RESOURCE_TYPES.items()},
}


# --- the tests -------------------------------------------------------------------------------


def test_setup_installs_the_layout_and_imports_every_saved_object(layout):
    """One setup run creates the OpenSearch layout and imports the bundle for its prefix, reporting each."""
    lines = layout.first_output.splitlines()
    assert f"created    data stream {layout.prefix}-standard" in lines
    assert f"created    index template {layout.prefix}-events" in lines
    for item in layout.items:
        assert f"created    saved {item['type']} {item['attributes']['title']}" in lines
    assert f"created    saved dashboard Audit Logs [{layout.prefix}]" in lines
    assert layout.uploaded.decode() == bundle.ndjson(layout.prefix).decode()


def test_setup_again_leaves_the_saved_objects_unchanged(layout, stored_objects):
    """A second setup finds the objects installed as they are: all unchanged, nothing imported."""
    output, uploads = _setup(layout.prefix, stored_objects)
    assert uploads == []
    for item in layout.items:
        assert f"unchanged  saved {item['type']} {item['attributes']['title']}" in output.splitlines()


def test_the_bundle_is_well_formed_for_the_prefix(layout):
    """The objects setup imported pass the OSD 2.19 structure checks."""
    assert structure.problems(layout.items) == []


def test_every_used_field_is_in_the_live_mapping_with_a_fitting_type(opensearch, layout):
    """Each field a saved object uses is on the node: aggregatable if aggregated, searchable if searched."""
    caps = opensearch.field_caps(index=f"{layout.prefix}-*", fields="*")["fields"]
    uses = structure.field_uses(layout.items)
    assert len(uses) > 100
    for use in uses:
        assert use.field in caps, f"{use.title}: {use.where} uses {use.field}, unmapped on the node"
        (capability,) = caps[use.field].values()
        if use.use == "aggregate":
            assert capability["aggregatable"], f"{use.title}: {use.field} is not aggregatable"
        if use.use == "search":
            assert capability["searchable"], f"{use.title}: {use.field} is not searchable"


def test_index_pattern_fields_are_what_dashboards_reads_from_the_node(opensearch, layout):
    """The shipped field list equals the list Dashboards would build from the node's _field_caps."""
    caps = opensearch.field_caps(index=f"{layout.prefix}-*", fields="*")["fields"]
    pattern = next(o for o in layout.items if o["type"] == "index-pattern")
    assert json.loads(pattern["attributes"]["fields"]) == fields.index_pattern_fields(caps)


def test_every_saved_search_has_an_expected_count():
    """The table of expected counts covers exactly the bundle's saved searches."""
    titles = {o["attributes"]["title"] for o in bundle.saved_objects() if o["type"] == "search"}
    assert titles == set(EXPECTED)


@pytest.mark.parametrize("title", sorted(EXPECTED))
def test_saved_search_returns_the_scenarios_entries(opensearch, layout, title):
    """The saved search's Lucene query and filters, run on the node, find exactly the entries they mean."""
    expected = [e for e in layout.window if EXPECTED[title](e)]
    assert expected, f"the scenario has no entry for {title}"
    if title != "Audit: all entries":
        assert len(expected) < len(layout.window), f"{title} would match everything"
    query = dashboards_query(layout, _sources(layout, layout.item(title)))
    hits = opensearch.search(
        index=f"{layout.prefix}-*",
        body={"query": query, "size": 100, "sort": [{"@timestamp": "desc"}], "_source": ["event.id"]},
    )["hits"]["hits"]
    assert [h["_source"]["event"]["id"] for h in hits] == [
        e.id for e in sorted(expected, key=lambda e: -e.unix_ms)
    ]


def test_the_time_range_leaves_older_entries_out(opensearch, layout):
    """Entries older than the dashboard's 24 hours exist on the node but are not counted."""
    assert len(layout.events) - len(layout.window) == 3
    everything = {"bool": {"must": [{"match_all": {}}]}}
    assert _count(opensearch, layout, everything) == len(layout.events)
    assert _count(
        opensearch, layout, dashboards_query(layout, [_source(layout.item("Audit: all entries"))])
    ) == len(layout.window)


def _chart(layout: Layout, title: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    item = layout.item(title)
    buckets = [a for a in json.loads(item["attributes"]["visState"])["aggs"] if a["schema"] != "metric"]
    return item, buckets


def _run_chart(opensearch: Any, layout: Layout, title: str) -> Counter[tuple[Any, ...]]:
    item, buckets = _chart(layout, title)
    result = _aggs(opensearch, layout, dashboards_query(layout, _sources(layout, item)), _nest(buckets))
    return _flatten(result, [b["id"] for b in buckets])


def test_events_over_time_by_action_group(opensearch, layout):
    """Per 30-minute bucket, the stacked counts are the scenario's entries per action type."""
    counts = _run_chart(opensearch, layout, "Audit: events over time by action group")
    expected: Counter[tuple[Any, ...]] = Counter()
    for e in layout.window:
        start = math.floor(e.unix_ms / INTERVAL) * INTERVAL
        expected[(start, e.action.filter_group)] += 1
    assert counts == expected
    groups = {group for _, group in counts}
    assert {"create", "update", "delete", "start-stop", "account", "team"} <= groups


def test_top_users(opensearch, layout):
    """The top-users table counts entries per user email."""
    counts = _run_chart(opensearch, layout, "Audit: top users")
    expected = Counter((e.actor.email,) for e in layout.window if e.actor.email)
    assert counts == expected
    assert counts[("alice@acme.example",)] == 12


def test_top_resources(opensearch, layout):
    """The top-resources table counts entries per resource type and name."""
    counts = _run_chart(opensearch, layout, "Audit: top resources")
    expected = Counter(
        (e.resource.type, e.resource.name)
        for e in layout.window
        if e.resource is not None and e.resource.name
    )
    assert counts == expected
    assert counts[("pod", "web-1")] == 2


def test_failed_logins_by_source_ip(opensearch, layout):
    """The chart built on the failed-logins search counts failed logins per address in the range."""
    counts = _run_chart(opensearch, layout, "Audit: failed logins by source IP")
    assert (
        counts
        == Counter({(MALLORY.ip,): 3, (BOB.ip,): 1, (ERIN.ip,): 1})
        == Counter((e.request.client_ip,) for e in layout.window if _is_failed_login(e) and e.request)
    )


def test_outcome_split(opensearch, layout):
    """The pie counts entries per outcome."""
    counts = _run_chart(opensearch, layout, "Audit: outcome")
    assert counts == Counter((e.outcome,) for e in layout.window)
    assert counts[("failure",)] == 5


def _controls(layout: Layout) -> dict[str, str]:
    state = json.loads(layout.item("Audit: filters")["attributes"]["visState"])
    return {control["label"]: control["fieldName"] for control in state["params"]["controls"]}


def _phrases(field: str, values: list[str]) -> dict[str, Any]:
    """The filter a list control adds: a phrase filter, or a phrases filter for several values."""
    if len(values) == 1:
        return {"match_phrase": {field: values[0]}}
    return {"bool": {"should": [{"match_phrase": {field: v}} for v in values], "minimum_should_match": 1}}


def test_each_control_offers_the_values_in_the_range(opensearch, layout):
    """A list control's options (a terms aggregation in the time range) are the scenario's values."""
    controls = _controls(layout)
    values: dict[str, Callable[[AuditEvent], str | None]] = {
        "Action type": lambda e: e.action.filter_group,
        "Resource type": lambda e: e.resource.type if e.resource else None,
        "User": lambda e: e.actor.email,
        "Tenant": lambda e: e.tenant.id if e.tenant else None,
    }
    assert set(controls) == set(values)
    base = dashboards_query(layout, [])
    for label, field in controls.items():
        # dynamicOptions: no size is sent, so the node's default of 10 applies.
        result = _aggs(
            opensearch, layout, base, {"termsAgg": {"terms": {"field": field, "order": {"_count": "desc"}}}}
        )
        offered = {b["key"]: b["doc_count"] for b in result["termsAgg"]["buckets"]}
        expected = Counter(v for e in layout.window if (v := values[label](e)) is not None)
        assert offered == dict(expected.most_common(10)), label


@pytest.mark.parametrize(
    ("label", "selected", "predicate"),
    [
        ("Action type", ["start-stop"], lambda e: e.action.id in ("start", "stop", "restart")),
        ("Action type", ["create", "delete"], lambda e: e.action.id in ("create", "delete")),
        ("Action type", ["account"], lambda e: e.action.group == "account"),
        ("Action type", ["team"], lambda e: e.action.group == "team"),
        ("Resource type", ["pod"], lambda e: e.resource is not None and e.resource.type == "pod"),
        ("User", ["erin@globex.example"], lambda e: e.actor.email == "erin@globex.example"),
        ("Tenant", ["globex"], lambda e: e.tenant is not None and e.tenant.id == "globex"),
    ],
    ids=["start-stop", "create+delete", "account", "team", "pod", "user", "tenant"],
)
def test_a_control_selection_filters_the_entries(opensearch, layout, label, selected, predicate):
    """Picking values in a control filters the entries table to exactly the matching entries."""
    control_filter = _phrases(_controls(layout)[label], selected)
    query = dashboards_query(layout, [_source(layout.item("Audit: all entries"))], [control_filter])
    expected = sum(1 for e in layout.window if predicate(e))
    assert 0 < expected < len(layout.window)
    assert _count(opensearch, layout, query) == expected


def test_controls_combine_with_a_saved_search(opensearch, layout):
    """A control's filter narrows a saved search (deletions in tenant acme), as on the dashboard."""
    control_filter = _phrases(_controls(layout)["Tenant"], ["acme"])
    query = dashboards_query(layout, [_source(layout.item("Audit: deletions"))], [control_filter])
    expected = sum(1 for e in layout.window if "deletion" in e.action.type and e.tenant == ACME)
    assert expected == 3
    assert _count(opensearch, layout, query) == expected
