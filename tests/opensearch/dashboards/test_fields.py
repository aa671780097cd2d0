"""The index pattern's field list, computed from field capabilities as Dashboards computes it."""

from __future__ import annotations

import pytest

from audit_middleware.opensearch import templates
from audit_middleware.opensearch.dashboards import fields


def caps(kind: str, searchable: bool = True, aggregatable: bool = True, **extra):
    return {kind: {"type": kind, "searchable": searchable, "aggregatable": aggregatable, **extra}}


@pytest.mark.parametrize(
    ("opensearch_type", "expected"),
    [
        ("keyword", "string"),
        ("text", "string"),
        ("long", "number"),
        ("unsigned_long", "number"),
        ("date", "date"),
        ("ip", "ip"),
        ("flat_object", "unknown"),
        ("wildcard", "unknown"),
        ("match_only_text", "unknown"),
    ],
)
def test_osd_type_follows_the_dashboards_type_table(opensearch_type, expected):
    """OpenSearch types map to the Dashboards types of osd_field_types_factory.ts, others to unknown."""
    assert fields.osd_type(opensearch_type) == expected


def test_field_specs_carry_capabilities_and_multi_field_parents():
    """A field spec holds its types and flags; a subfield of a non-object names its parent."""
    specs = {
        spec["name"]: spec
        for spec in fields.index_pattern_fields(
            {
                "user": caps("object", False, False),
                "user.name": caps("keyword"),
                "user.name.text": caps("match_only_text", aggregatable=False),
                "message": caps("text", aggregatable=False),
            }
        )
    }
    assert "user" not in specs
    assert specs["user.name"] == {
        "count": 0,
        "name": "user.name",
        "type": "string",
        "esTypes": ["keyword"],
        "scripted": False,
        "searchable": True,
        "aggregatable": True,
        "readFromDocValues": True,
    }
    assert "subType" not in specs["user.name"]
    assert specs["user.name.text"]["subType"] == {"multi": {"parent": "user.name"}}
    assert specs["user.name.text"]["type"] == "unknown"
    assert specs["message"]["readFromDocValues"] is False


def test_meta_fields_are_merged_with_dashboards_overrides():
    """_source, _id, _type, _index and _score are always listed, with Dashboards' forced types."""
    specs = {spec["name"]: spec for spec in fields.index_pattern_fields({"_id": caps("_id")})}
    assert set(specs) == set(fields.META_FIELDS)
    assert specs["_id"]["type"] == "string"
    assert specs["_id"]["readFromDocValues"] is False  # meta types never read doc values
    assert specs["_score"]["type"] == "number"
    assert specs["_type"] == {
        "count": 0,
        "name": "_type",
        "type": "string",
        "scripted": False,
        "searchable": False,
        "aggregatable": False,
        "readFromDocValues": False,
    }


def test_types_that_disagree_across_indices_are_a_conflict():
    """A field that is keyword in one index and long in another is a conflict, read without doc values."""
    both = {**caps("keyword"), **caps("long")}
    (spec,) = [s for s in fields.index_pattern_fields({"code": both}) if s["name"] == "code"]
    assert spec["type"] == "conflict"
    assert spec["readFromDocValues"] is False
    same = {**caps("keyword"), **caps("text", aggregatable=False)}
    (spec,) = [s for s in fields.index_pattern_fields({"code": same}) if s["name"] == "code"]
    assert spec["type"] == "string"


def test_flat_object_and_index_prefix_internals_are_left_out():
    """The 'field.' entries of flat_object and the '._index_prefix' entries are not fields to show."""
    names = {
        spec["name"]
        for spec in fields.index_pattern_fields(
            {
                "audit.details": caps("flat_object", aggregatable=False),
                "audit.details.": caps("flat_object", aggregatable=False),
                "name.text": caps("text", aggregatable=False),
                "name.text._index_prefix": caps("prefix", aggregatable=False),
            }
        )
    }
    assert {"audit.details", "name.text"} <= names
    assert not {"audit.details.", "name.text._index_prefix"} & names


def test_specs_are_sorted_by_name():
    """The list is in name order, as Dashboards sorts it."""
    names = [spec["name"] for spec in fields.index_pattern_fields(fields.template_field_caps())]
    assert names == sorted(names)


def test_template_caps_cover_every_mapped_field_and_subfield():
    """Every field and subfield of the template is in the predicted capabilities, and nothing else."""
    mapped = templates.field_mappings()
    expected = set(mapped) | {
        f"{name}.{sub}" for name, mapping in mapped.items() for sub in mapping.get("fields", {})
    }
    predicted = fields.template_field_caps()
    assert set(predicted) - {"_id", "_index", "_source"} == expected == fields.field_spec_names()
    assert predicted["audit.details"]["flat_object"]["aggregatable"] is False
    assert predicted["audit.resource.name.text"]["text"]["aggregatable"] is False
    assert predicted["audit.action.filter"]["keyword"]["aggregatable"] is True
