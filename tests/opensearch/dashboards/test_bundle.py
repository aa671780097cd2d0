"""The bundled saved objects: one generated source, its committed copies, and what they hold."""

from __future__ import annotations

import json
import re

import pytest

from audit_middleware.model import event
from audit_middleware.model.actions import CATALOG
from audit_middleware.model.event import BUILTIN_RESOURCE_TYPES
from audit_middleware.opensearch.dashboards import bundle, fields, structure
from tests.conftest import ROOT

COMMITTED = ROOT / "kibana_dashboards" / bundle.BUNDLE_FILE
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")


def by_title(items):
    return {item["attributes"]["title"]: item for item in items}


def source_of(item):
    return json.loads(item["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])


def test_committed_copy_is_the_generated_file():
    """kibana_dashboards/ holds exactly what the generator writes (make dashboards regenerates it)."""
    assert COMMITTED.read_bytes() == bundle.ndjson(), "stale: run `make dashboards`"


def test_package_data_is_the_generated_file():
    """The copy shipped in the wheel is the same file."""
    assert bundle.bundled_ndjson() == bundle.ndjson(), "stale: run `make dashboards`"


def test_the_file_is_one_object_per_line():
    """Every line is one JSON saved object and the file ends with a newline."""
    content = COMMITTED.read_text(encoding="utf-8")
    assert content.endswith("\n")
    lines = content.splitlines()
    assert [json.loads(line) for line in lines] == bundle.saved_objects()


@pytest.mark.parametrize("prefix", ["audit", "acme-audit"])
def test_bundle_has_no_structural_problems(prefix):
    """The objects pass every check of the OSD 2.19 saved-object structure, for any prefix."""
    assert structure.problems(bundle.saved_objects(prefix)) == []


def test_every_used_field_is_mapped_by_the_template():
    """No saved object names a field the index template does not map."""
    used = {use.field for use in structure.field_uses(bundle.saved_objects())}
    assert used <= fields.field_spec_names()
    assert {"audit.action.filter", "audit.resource.type", "user.email", "@timestamp"} <= used


def test_a_field_the_template_lacks_is_refused():
    """The generator refuses to name an unmapped field, so names cannot drift from the template."""
    with pytest.raises(ValueError, match=r"maps no field 'user\.nickname'"):
        bundle._field("user.nickname")


def test_ids_are_stable_lowercase_uuids_per_prefix():
    """Ids are UUIDs (Discover's CSV report needs them), the same on every run, different per prefix."""
    first, again, other = bundle.saved_objects(), bundle.saved_objects(), bundle.saved_objects("acme")
    assert [o["id"] for o in first] == [o["id"] for o in again]
    assert all(UUID.match(o["id"]) for o in first)
    assert not {o["id"] for o in first} & {o["id"] for o in other}


def test_index_pattern_covers_the_data_streams_of_the_prefix():
    """The index pattern is {prefix}-*, timed on @timestamp, with the user agent and IP formats."""
    (pattern,) = [o for o in bundle.saved_objects("acme") if o["type"] == "index-pattern"]
    attributes = pattern["attributes"]
    assert attributes["title"] == "acme-*"
    assert attributes["timeFieldName"] == "@timestamp"
    formats = json.loads(attributes["fieldFormatMap"])
    assert formats["user_agent.original"]["id"] == "truncate"
    assert formats["source.ip"]["id"] == "url"
    assert json.loads(attributes["fields"]) == fields.index_pattern_fields(fields.template_field_caps())


def test_titles_name_the_prefix_unless_it_is_the_default():
    """Default prefix: "Audit Logs"; another prefix gets its name in brackets, so both can coexist."""
    assert "Audit Logs" in by_title(bundle.saved_objects())
    assert "Audit Logs [acme]" in by_title(bundle.saved_objects("acme"))


def test_saved_searches_cover_the_briefs_views():
    """All entries, failed logins, deletions, permissions, tokens, SSH keys and one per resource type."""
    searches = by_title(o for o in bundle.saved_objects() if o["type"] == "search")
    for title in (
        "Audit: all entries",
        "Audit: failed logins",
        "Audit: deletions",
        "Audit: permission changes",
        "Audit: API token events",
        "Audit: SSH key events",
    ):
        assert title in searches
    for kind, label in BUILTIN_RESOURCE_TYPES.items():
        assert source_of(searches[f"Audit: {label} entries"])["filter"][0]["query"] == {
            "match_phrase": {"audit.resource.type": kind}
        }
    for search in searches.values():
        assert search["attributes"]["sort"] == [["@timestamp", "desc"]]
        assert source_of(search)["query"]["language"] == "lucene"


def test_resource_types_an_app_registers_leave_the_bundle_alone():
    """Registering or relabelling a resource type at run time does not change the shipped objects."""
    saved = dict(event.RESOURCE_TYPES)
    try:
        event.register_resource_type("k8s.namespace", "Namespace")
        event.register_resource_type("pod", "Container Group")
        assert bundle.ndjson() == bundle.bundled_ndjson()
    finally:
        event.RESOURCE_TYPES.clear()
        event.RESOURCE_TYPES.update(saved)


def test_all_entries_shows_user_action_resource_outcome_and_ip():
    """The main table's columns are user, action, resource, outcome and IP (time comes first by itself)."""
    search = by_title(bundle.saved_objects())["Audit: all entries"]
    assert search["attributes"]["columns"] == [
        "user.email",
        "audit.action.label",
        "audit.resource.type",
        "audit.resource.name",
        "event.outcome",
        "source.ip",
    ]
    assert source_of(search)["query"]["query"] == ""


def test_queries_name_only_catalog_actions():
    """Every action id in a query is one the catalog knows."""
    for search in (o for o in bundle.saved_objects() if o["type"] == "search"):
        query = source_of(search)["query"]["query"]
        for group in re.findall(r'event\.action:\(?((?:"\w+"(?: OR )?)+)\)?', query):
            for action_id in re.findall(r'"(\w+)"', group):
                assert action_id in CATALOG


def test_dashboard_is_a_live_view_with_the_filter_controls():
    """Audit Logs opens on the last 24 hours, refreshes itself, and has the brief's filter controls."""
    objects_by_title = by_title(bundle.saved_objects())
    board = objects_by_title["Audit Logs"]["attributes"]
    assert (board["timeRestore"], board["timeFrom"], board["timeTo"]) == (True, "now-24h", "now")
    assert board["refreshInterval"] == {"pause": False, "value": bundle.REFRESH_MS}
    controls = json.loads(objects_by_title["Audit: filters"]["attributes"]["visState"])["params"]["controls"]
    assert [(c["label"], c["fieldName"]) for c in controls] == [
        ("Action type", "audit.action.filter"),
        ("Resource type", "audit.resource.type"),
        ("User", "user.email"),
        ("Tenant", "organization.id"),
    ]


def test_dashboard_shows_every_visualization_and_the_entries():
    """Each visualization and the all-entries search are panels of the dashboard."""
    items = bundle.saved_objects()
    board = next(o for o in items if o["type"] == "dashboard")
    shown = {(ref["type"], ref["id"]) for ref in board["references"]}
    visualizations = {("visualization", o["id"]) for o in items if o["type"] == "visualization"}
    assert visualizations <= shown
    assert ("search", by_title(items)["Audit: all entries"]["id"]) in shown
    assert len(json.loads(board["attributes"]["panelsJSON"])) == len(board["references"]) == 7


def test_failed_logins_by_ip_reads_the_failed_logins_search():
    """The failed-logins chart is built on the saved search, so both count the same entries."""
    items = by_title(bundle.saved_objects())
    chart = items["Audit: failed logins by source IP"]
    assert chart["attributes"]["savedSearchRefName"] == "search_0"
    assert chart["references"] == [
        {"name": "search_0", "type": "search", "id": items["Audit: failed logins"]["id"]}
    ]
