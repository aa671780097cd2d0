"""Visualization builders: count charts in their schemas, and input controls by reference."""

from __future__ import annotations

import json

import pytest

from audit_middleware.opensearch.dashboards import visualizations
from audit_middleware.opensearch.dashboards.visualizations import Control, DateHistogram, Terms


def state_of(item):
    return json.loads(item["attributes"]["visState"])


def test_a_chart_counts_with_metric_one_and_buckets_in_the_types_schemas():
    """A histogram has the count metric "1", the date histogram as segment and terms as group."""
    chart = visualizations.visualization(
        "v-1",
        title="Over time",
        description="",
        kind="histogram",
        buckets=[DateHistogram("@timestamp"), Terms("event.action", 5, "Action")],
        index_pattern_id="ip-1",
    )
    state = state_of(chart)
    assert [(a["id"], a["type"], a["schema"]) for a in state["aggs"]] == [
        ("1", "count", "metric"),
        ("2", "date_histogram", "segment"),
        ("3", "terms", "group"),
    ]
    assert state["aggs"][2]["params"]["orderBy"] == "1"
    assert state["params"]["seriesParams"][0]["data"]["id"] == "1"
    assert state["title"] == chart["attributes"]["title"]
    assert chart["references"] == [
        {"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern", "id": "ip-1"}
    ]


def test_a_chart_on_a_saved_search_references_it_as_search_0():
    """A chart built on a saved search has savedSearchRefName and no index pattern of its own."""
    chart = visualizations.visualization(
        "v-2",
        title="By IP",
        description="",
        kind="horizontal_bar",
        buckets=[Terms("source.ip", 10, "IP")],
        saved_search_id="s-1",
    )
    assert chart["attributes"]["savedSearchRefName"] == "search_0"
    assert chart["references"] == [{"name": "search_0", "type": "search", "id": "s-1"}]
    assert "indexRefName" not in json.loads(chart["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"index_pattern_id": "ip", "saved_search_id": "s"}, "either an index pattern or a saved search"),
        ({}, "either an index pattern or a saved search"),
        (
            {"index_pattern_id": "ip", "kind": "pie", "buckets": [Terms("a", 1, "A"), Terms("b", 1, "B")]},
            "at most 1",
        ),
    ],
)
def test_impossible_charts_are_refused(kwargs, message):
    """A chart reads exactly one source and takes no more buckets than its type has schemas."""
    arguments = {"title": "x", "description": "", "kind": "table", "buckets": [Terms("a", 1, "A")], **kwargs}
    with pytest.raises(ValueError, match=message):
        visualizations.visualization("v", **arguments)


def test_input_controls_reference_the_index_pattern_once_per_control():
    """Each list control has indexPatternRefName control_<i>_index_pattern and its own reference."""
    panel = visualizations.input_controls(
        "c-1",
        title="Filters",
        description="",
        index_pattern_id="ip-1",
        controls=[Control("audit.action.filter", "Action type"), Control("user.email", "User")],
    )
    controls = state_of(panel)["params"]["controls"]
    assert [(c["fieldName"], c["indexPatternRefName"], c["type"]) for c in controls] == [
        ("audit.action.filter", "control_0_index_pattern", "list"),
        ("user.email", "control_1_index_pattern", "list"),
    ]
    assert all("indexPattern" not in c for c in controls)
    assert [r["name"] for r in panel["references"]] == ["control_0_index_pattern", "control_1_index_pattern"]
    assert state_of(panel)["params"]["useTimeFilter"] is True
