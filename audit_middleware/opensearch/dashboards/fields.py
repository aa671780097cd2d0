"""The index pattern's field list, built as OpenSearch Dashboards 2.19 builds it from ``_field_caps``.

Dashboards refreshes an index pattern's fields by asking OpenSearch for the field
capabilities of its indices and converting each into a *field spec* (name, Dashboards
type, OpenSearch types, searchable, aggregatable, read from doc values, multi-field
parent). ``index_pattern_fields`` is that conversion, following
``readFieldCapsResponse``, ``shouldReadFieldFromDocValues``, ``getFieldCapabilities``
and ``mergeOverrides`` (``src/plugins/data/server/index_patterns/fetcher/lib/
field_capabilities/``) and the type table of ``osd_field_types_factory.ts``.

``template_field_caps`` says what ``_field_caps`` answers for a data stream created from
the index template; the bundled index pattern is ``index_pattern_fields`` of it, so its
list is complete (Dashboards refreshes only lists that lack the capability flags) and
names exactly the template's fields. The integration tests compare it with the field
capabilities of a real node.

Two kinds of internal fields are left out: the ``<field>.`` entries a ``flat_object``
adds and the ``<field>._index_prefix`` entries of ``index_prefixes``; they cannot be
shown or searched on their own.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

from audit_middleware.opensearch import templates

__all__ = [
    "META_FIELDS",
    "FieldCaps",
    "field_spec_names",
    "index_pattern_fields",
    "osd_type",
    "template_field_caps",
]

FieldCaps = Mapping[str, Mapping[str, Mapping[str, Any]]]
"""``_field_caps`` ``fields``: field name -> OpenSearch type -> capabilities."""

# Dashboards' default ``metaFields`` advanced setting: merged into every index pattern.
META_FIELDS = ("_source", "_id", "_type", "_index", "_score")

# osd_field_types_factory.ts: the OpenSearch types of each Dashboards type; others are "unknown".
_OSD_TYPES: dict[str, str] = {
    **dict.fromkeys(("string", "text", "keyword", "_type", "_id"), "string"),
    **dict.fromkeys(
        (
            "float",
            "half_float",
            "scaled_float",
            "double",
            "integer",
            "long",
            "unsigned_long",
            "short",
            "byte",
            "token_count",
        ),
        "number",
    ),
    **dict.fromkeys(("date", "date_nanos"), "date"),
    "ip": "ip",
    "boolean": "boolean",
    "object": "object",
    "nested": "nested",
    "geo_point": "geo_point",
    "geo_shape": "geo_shape",
    "attachment": "attachment",
    "murmur3": "murmur3",
    "_source": "_source",
    "histogram": "histogram",
}

# overrides.ts: what Dashboards forces on the meta fields.
_OVERRIDES: dict[str, dict[str, Any]] = {
    "_source": {"type": "_source"},
    "_index": {"type": "string"},
    "_type": {"type": "string"},
    "_id": {"type": "string"},
    "_score": {"type": "number", "searchable": False, "aggregatable": False},
}

# OpenSearch types that are indexed for search but have no doc values to aggregate on.
_SEARCH_ONLY_TYPES = frozenset({"text", "match_only_text", "wildcard", "flat_object"})
# Meta fields as a data stream's _field_caps reports them (OpenSearch 2.19).
_META_CAPS: dict[str, tuple[str, bool, bool]] = {
    "_id": ("_id", True, True),
    "_index": ("_index", True, True),
    "_source": ("_source", False, False),
}


def osd_type(opensearch_type: str) -> str:
    """The Dashboards field type of an OpenSearch field type (``keyword`` -> ``string``)."""
    return _OSD_TYPES.get(opensearch_type, "unknown")


def _is_internal(name: str, types: Mapping[str, Any]) -> bool:
    return name.endswith(".") or "prefix" in types


def _read_from_doc_values(aggregatable: bool, opensearch_type: str) -> bool:
    return (
        aggregatable and opensearch_type not in ("text", "geo_shape") and not opensearch_type.startswith("_")
    )


def _descriptor(name: str, caps_by_type: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    types = list(caps_by_type)
    searchable = any(
        caps.get("searchable") or caps.get("non_searchable_indices") for caps in caps_by_type.values()
    )
    aggregatable = any(
        caps.get("aggregatable") or caps.get("non_aggregatable_indices") for caps in caps_by_type.values()
    )
    kinds = {osd_type(t) for t in types}
    # Several OpenSearch types that map to one Dashboards type are no conflict.
    conflict = len(kinds) > 1
    return {
        "name": name,
        "type": "conflict" if conflict else kinds.pop(),
        "esTypes": types,
        "searchable": bool(searchable),
        "aggregatable": bool(aggregatable),
        "readFromDocValues": not conflict and _read_from_doc_values(bool(aggregatable), types[0]),
    }


def _parents(name: str) -> Iterator[str]:
    """``a.b.c`` -> ``a.b``, ``a``: nearest parent first."""
    parts = name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        yield ".".join(parts[:end])


def index_pattern_fields(field_caps: FieldCaps) -> list[dict[str, Any]]:
    """The field specs Dashboards stores in an index pattern's ``fields``, sorted by name."""
    descriptors = {
        name: _descriptor(name, types)
        for name, types in field_caps.items()
        if types and not _is_internal(name, types)
    }
    for name, descriptor in descriptors.items():
        nearest = next((descriptors[p] for p in _parents(name) if p in descriptors), None)
        if nearest is not None and nearest["type"] not in ("object", "nested"):
            descriptor["subType"] = {"multi": {"parent": nearest["name"]}}
    names = [n for n in descriptors if not n.startswith("_")] + list(META_FIELDS)
    specs: list[dict[str, Any]] = []
    for name in dict.fromkeys(names):
        found = descriptors.get(name) or {
            "name": name,
            "type": "string",
            "searchable": False,
            "aggregatable": False,
            "readFromDocValues": False,
        }
        if found["type"] in ("object", "nested"):
            continue
        merged = {**found, **_OVERRIDES.get(name, {})}
        spec: dict[str, Any] = {"count": 0, "name": name, "type": merged["type"]}
        if "esTypes" in merged:
            spec["esTypes"] = merged["esTypes"]
        spec.update(
            scripted=False,
            searchable=merged["searchable"],
            aggregatable=merged["aggregatable"],
            readFromDocValues=merged["readFromDocValues"],
        )
        if "subType" in merged:
            spec["subType"] = merged["subType"]
        specs.append(spec)
    return sorted(specs, key=lambda spec: spec["name"])


def _caps(opensearch_type: str, searchable: bool, aggregatable: bool) -> dict[str, dict[str, Any]]:
    return {
        opensearch_type: {"type": opensearch_type, "searchable": searchable, "aggregatable": aggregatable}
    }


def _mapped_leaves() -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every field the template maps, subfields included, with its mapping."""
    for name, mapping in templates.field_mappings().items():
        yield name, mapping
        for subfield, sub_mapping in mapping.get("fields", {}).items():
            yield f"{name}.{subfield}", sub_mapping


def _leaf_caps(mapping: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    # a field stored in _source only (index and doc_values off) is neither searched nor aggregated
    kind = mapping["type"]
    searchable = mapping.get("index", True) is not False
    aggregatable = kind not in _SEARCH_ONLY_TYPES and mapping.get("doc_values", True) is not False
    return _caps(kind, searchable, aggregatable)


def template_field_caps() -> dict[str, dict[str, dict[str, Any]]]:
    """What ``_field_caps`` reports for the template's fields (object parents left out)."""
    caps = {name: _leaf_caps(mapping) for name, mapping in _mapped_leaves()}
    caps.update({name: _caps(*values) for name, values in _META_CAPS.items()})
    return caps


@functools.cache
def field_spec_names() -> frozenset[str]:
    """The names of every field the template maps (subfields included)."""
    return frozenset(name for name, _ in _mapped_leaves())
