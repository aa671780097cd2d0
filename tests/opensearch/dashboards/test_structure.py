"""The checks an import file must pass for OpenSearch Dashboards 2.19, each shown to catch its fault."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from audit_middleware.errors import AuditValidationError
from audit_middleware.opensearch.dashboards import bundle, structure


def first(items: list[dict[str, Any]], kind: str, title: str | None = None) -> dict[str, Any]:
    return next(
        o for o in items if o["type"] == kind and (title is None or o["attributes"]["title"] == title)
    )


def edit_json(item: dict[str, Any], path: tuple[str, ...], change: Callable[[Any], None]) -> None:
    """Decode the JSON string attribute at ``path``, change it, encode it back."""
    holder = item["attributes"]
    for key in path[:-1]:
        holder = holder[key]
    value = json.loads(holder[path[-1]])
    change(value)
    holder[path[-1]] = json.dumps(value)


SOURCE = ("kibanaSavedObjectMeta", "searchSourceJSON")


def drop_reference(name: str, kind: str) -> Callable[[list[dict[str, Any]]], None]:
    def change(items: list[dict[str, Any]]) -> None:
        item = next(o for o in items if o["type"] == kind and any(r["name"] == name for r in o["references"]))
        item["references"] = [r for r in item["references"] if r["name"] != name]

    return change


def set_key(kind: str, key: str, value: Any) -> Callable[[list[dict[str, Any]]], None]:
    def change(items: list[dict[str, Any]]) -> None:
        first(items, kind)[key] = value

    return change


def duplicate_search(items: list[dict[str, Any]]) -> None:
    items.append(copy.deepcopy(first(items, "search")))


def inline_index(items: list[dict[str, Any]]) -> None:
    edit_json(first(items, "search"), SOURCE, lambda source: source.update(index="abc"))


def kuery_query(items: list[dict[str, Any]]) -> None:
    edit_json(first(items, "search"), SOURCE, lambda source: source["query"].update(language="kuery"))


def broken_vis_state(items: list[dict[str, Any]]) -> None:
    first(items, "visualization")["attributes"]["visState"] = "{not json"


def unknown_column(items: list[dict[str, Any]]) -> None:
    first(items, "search")["attributes"]["columns"].append("user.nickname")


def aggregate_text(items: list[dict[str, Any]]) -> None:
    chart = first(items, "visualization", "Audit: top users")
    edit_json(chart, ("visState",), lambda state: state["aggs"][1]["params"].update(field="user.name.text"))


def query_unknown_field(items: list[dict[str, Any]]) -> None:
    edit_json(
        first(items, "search", "Audit: deletions"),
        SOURCE,
        lambda source: source["query"].update(query='event.kind:"event" AND user.nickname:"x"'),
    )


def wide_panel(items: list[dict[str, Any]]) -> None:
    edit_json(first(items, "dashboard"), ("panelsJSON",), lambda panels: panels[0]["gridData"].update(x=10))


def panel_without_version(items: list[dict[str, Any]]) -> None:
    edit_json(first(items, "dashboard"), ("panelsJSON",), lambda panels: panels[0].pop("version"))


def series_without_metric(items: list[dict[str, Any]]) -> None:
    chart = first(items, "visualization", "Audit: events over time by action group")
    edit_json(chart, ("visState",), lambda state: state["params"]["seriesParams"][0]["data"].update(id="9"))


def reference_outside_the_file(items: list[dict[str, Any]]) -> None:
    items[:] = [o for o in items if o["type"] != "index-pattern"]


def time_field_not_a_date(items: list[dict[str, Any]]) -> None:
    first(items, "index-pattern")["attributes"]["timeFieldName"] = "event.id"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (drop_reference("kibanaSavedObjectMeta.searchSourceJSON.index", "search"), "no reference named"),
        (drop_reference("control_2_index_pattern", "visualization"), "'control_2_index_pattern'"),
        (drop_reference("panel_3", "dashboard"), "no reference named 'panel_3'"),
        (drop_reference("search_0", "visualization"), "no reference named 'search_0'"),
        (
            drop_reference("kibanaSavedObjectMeta.searchSourceJSON.filter[0].meta.index", "search"),
            "filter[0].meta.index",
        ),
        (set_key("visualization", "migrationVersion", {"visualization": "7.11.0"}), "migrationVersion"),
        (set_key("search", "id", "failed-logins"), "lowercase UUID"),
        (set_key("dashboard", "updated_at", "2025-01-01"), "keys must be exactly"),
        (set_key("search", "type", "lens"), "type must be one of"),
        (duplicate_search, "duplicate type and id"),
        (inline_index, "names its index inline"),
        (kuery_query, "Lucene"),
        (broken_vis_state, "visState is not valid JSON"),
        (unknown_column, "'user.nickname', not a field of the index pattern"),
        (aggregate_text, "aggregates 'user.name.text', which is not aggregatable"),
        (query_unknown_field, "query uses 'user.nickname'"),
        (wide_panel, "48-column grid"),
        (panel_without_version, "semver version"),
        (series_without_metric, "seriesParams"),
        (reference_outside_the_file, "not in the file"),
        (time_field_not_a_date, "timeFieldName"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_each_fault_is_named(fault, expected):
    """A broken copy of the bundle is refused with a problem that names the fault."""
    items = copy.deepcopy(bundle.saved_objects())
    fault(items)
    found = structure.problems(items)
    assert any(expected in problem for problem in found), found
    with pytest.raises(AuditValidationError, match="would not import cleanly"):
        structure.validate(items)


def test_a_line_that_is_not_an_object_is_named():
    """A line holding a list or a string is a problem, not a crash."""
    assert structure.problems([["not", "an", "object"]]) == [
        "line 1: not a JSON object",
        "the file needs exactly one index pattern, not 0",
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", []),
        ('event.action:("login" OR "login_failed")', ["event.action"]),
        ('user.email:"a:b@example.com" AND NOT source.ip:"2001:db8::1"', ["user.email", "source.ip"]),
        ("@timestamp:[now-1d TO now] OR audit.resource.type:pod", ["@timestamp", "audit.resource.type"]),
        (r'url.path:\/x\:y OR "event.kind:quoted"', ["url.path"]),
    ],
)
def test_lucene_fields_are_read_outside_quotes(query, expected):
    """Field names before a colon are found; colons inside quoted or escaped text are not fields."""
    assert structure.lucene_fields(query) == expected


def test_field_uses_say_how_each_field_is_used():
    """Terms and date histograms aggregate, filters and controls search, columns show."""
    uses = {(u.field, u.use, u.title) for u in structure.field_uses(bundle.saved_objects())}
    assert ("@timestamp", "aggregate", "Audit: events over time by action group") in uses
    assert ("audit.action.filter", "search", "Audit: filters") in uses
    assert ("audit.action.filter", "aggregate", "Audit: filters") in uses
    assert ("event.outcome", "search", "Audit: failed logins") in uses
    assert ("source.ip", "show", "Audit: all entries") in uses
