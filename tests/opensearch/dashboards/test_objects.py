"""Saved-object builders: line format, references instead of inline ids, ndjson encoding."""

from __future__ import annotations

import json
import uuid

import pytest

from audit_middleware.opensearch.dashboards import objects
from audit_middleware.opensearch.dashboards.objects import Panel, PhraseFilter


def test_object_ids_are_deterministic_uuids_per_prefix_and_name():
    """The same prefix and name always give the same UUID; another prefix another one."""
    first = objects.object_id("audit", "dashboard")
    assert first == objects.object_id("audit", "dashboard")
    assert uuid.UUID(first).version == 5
    assert first != objects.object_id("acme", "dashboard") != objects.object_id("audit", "index-pattern")


def test_a_line_carries_its_types_newest_migration_version():
    """Every builder sets migrationVersion to the type's newest migration, so none runs on import."""
    line = objects.saved_object_line("search", "x", {"title": "t"}, [])
    assert line == {
        "type": "search",
        "id": "x",
        "attributes": {"title": "t"},
        "references": [],
        "migrationVersion": {"search": "7.9.3"},
    }


def test_saved_search_links_its_index_pattern_and_filters_by_reference():
    """indexRefName and each filter's meta.indexRefName resolve through references; no inline index."""
    search = objects.saved_search(
        "s-1",
        title="Failed",
        description="",
        index_pattern_id="ip-1",
        query='event.outcome:"failure"',
        filters=[PhraseFilter("user.name", "admin"), PhraseFilter("source.ip", "10.0.0.1", negate=True)],
        columns=["user.name"],
        sort=[("@timestamp", "desc")],
    )
    source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert "index" not in source
    assert source["indexRefName"] == objects.INDEX_REF
    assert source["query"] == {"query": 'event.outcome:"failure"', "language": "lucene"}
    assert source["filter"][1]["meta"]["negate"] is True
    assert source["filter"][1]["query"] == {"match_phrase": {"source.ip": "10.0.0.1"}}
    assert search["references"] == [
        {"name": objects.INDEX_REF, "type": "index-pattern", "id": "ip-1"},
        {
            "name": "kibanaSavedObjectMeta.searchSourceJSON.filter[0].meta.index",
            "type": "index-pattern",
            "id": "ip-1",
        },
        {
            "name": "kibanaSavedObjectMeta.searchSourceJSON.filter[1].meta.index",
            "type": "index-pattern",
            "id": "ip-1",
        },
    ]
    assert search["attributes"]["sort"] == [["@timestamp", "desc"]]


def test_a_filter_without_an_index_pattern_is_refused():
    """A filter needs the index pattern its reference points at."""
    with pytest.raises(ValueError, match="index pattern"):
        objects.search_source("", [PhraseFilter("a", "b")], None)


def test_dashboard_panels_reference_their_objects():
    """Panels name their object through panelRefName; gridData.i equals panelIndex."""
    board = objects.dashboard(
        "d-1",
        title="Board",
        description="",
        panels=[Panel("visualization", "v-1", 0, 0, 24, 10), Panel("search", "s-1", 24, 0, 24, 10)],
        time_from="now-7d",
        refresh_ms=5000,
    )
    panels = json.loads(board["attributes"]["panelsJSON"])
    assert [p["panelRefName"] for p in panels] == ["panel_0", "panel_1"]
    assert [p["gridData"]["i"] for p in panels] == [p["panelIndex"] for p in panels] == ["1", "2"]
    assert all(p["version"] == objects.OSD_VERSION and "id" not in p for p in panels)
    assert board["references"] == [
        {"name": "panel_0", "type": "visualization", "id": "v-1"},
        {"name": "panel_1", "type": "search", "id": "s-1"},
    ]
    assert board["attributes"]["refreshInterval"] == {"pause": False, "value": 5000}
    assert board["attributes"]["timeFrom"] == "now-7d"


def test_ndjson_is_one_sorted_object_per_line():
    """encode_ndjson writes each object on one line, keys sorted, UTF-8, with a final newline."""
    content = objects.encode_ndjson([{"b": 1, "a": "é"}, {"c": [1, 2]}])
    assert content == '{"a":"é","b":1}\n{"c":[1,2]}\n'.encode()
