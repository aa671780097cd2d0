"""OpenSearch Dashboards 2.19 saved objects: the line format, index patterns, searches, dashboards.

Each builder returns one import line: ``type``, ``id``, ``attributes``, ``references``
and ``migrationVersion``. The shapes follow Dashboards' own saved-object types and
their reference extraction (docs/dashboards.md cites the files):

* index patterns and search sources are linked by references, never by inline ids:
  ``indexRefName`` in a search source, ``meta.indexRefName`` in a filter,
  ``savedSearchRefName`` for a visualization built on a saved search,
  ``indexPatternRefName`` in an input control and ``panelRefName`` in a dashboard panel;
* ``migrationVersion`` is the newest migration of each type, so Dashboards runs none
  and stores the attributes as written;
* queries are Lucene and filters are query DSL, so they mean on the node what they
  mean in Dashboards.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DASHBOARD_COLUMNS",
    "INDEX_REF",
    "MIGRATION_VERSIONS",
    "OSD_VERSION",
    "SAVED_SEARCH_REF",
    "Panel",
    "PhraseFilter",
    "dashboard",
    "encode_ndjson",
    "index_pattern",
    "json_text",
    "object_id",
    "reference",
    "saved_object_line",
    "saved_search",
    "search_source",
]

# The newest key of each type's migration map: no migration runs on import.
MIGRATION_VERSIONS: dict[str, str] = {
    "index-pattern": "7.6.0",
    "search": "7.9.3",
    "visualization": "7.10.0",
    "dashboard": "7.9.3",
}
OSD_VERSION = "2.19.0"
DASHBOARD_COLUMNS = 48
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"
SAVED_SEARCH_REF = "search_0"
# Fixed, so ids are the same on every machine and every run: uuid5 of prefix and name.
_ID_NAMESPACE = uuid.UUID("8d7f1f64-52a4-5c3e-9a57-0f3b8e0c6a11")


def object_id(prefix: str, name: str) -> str:
    """A stable lowercase UUID per name and prefix (Discover's CSV reports need UUID ids).

    >>> object_id("audit", "index-pattern") == object_id("audit", "index-pattern")
    True
    """
    return str(uuid.uuid5(_ID_NAMESPACE, f"{prefix}/{name}"))


def json_text(value: Any) -> str:
    """Compact JSON, as Dashboards stores its ``*JSON`` attributes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def saved_object_line(
    kind: str, object_id_: str, attributes: dict[str, Any], references: list[dict[str, str]]
) -> dict[str, Any]:
    """One import line of ``kind``, at the type's newest migration version."""
    return {
        "type": kind,
        "id": object_id_,
        "attributes": attributes,
        "references": references,
        "migrationVersion": {kind: MIGRATION_VERSIONS[kind]},
    }


def reference(name: str, kind: str, target: str) -> dict[str, str]:
    """A reference the object's ``*RefName`` attributes look up by ``name``."""
    return {"name": name, "type": kind, "id": target}


def index_pattern(
    object_id_: str,
    *,
    title: str,
    time_field: str,
    fields: Sequence[Mapping[str, Any]],
    field_formats: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """An index pattern: ``title`` is the pattern (``audit-*``), ``fields`` its field specs."""
    return saved_object_line(
        "index-pattern",
        object_id_,
        {
            "title": title,
            "timeFieldName": time_field,
            "fields": json_text(list(fields)),
            "fieldFormatMap": json_text(dict(field_formats)),
        },
        [],
    )


@dataclass(frozen=True)
class PhraseFilter:
    """A filter-bar filter "``field`` is ``value``" (``match_phrase``), as the filter bar builds it."""

    field: str
    value: str
    negate: bool = False

    def build(self, position: int) -> tuple[dict[str, Any], dict[str, str]]:
        """The filter at ``position`` of a search source, and the reference to its index pattern."""
        ref_name = f"kibanaSavedObjectMeta.searchSourceJSON.filter[{position}].meta.index"
        built = {
            "meta": {
                "alias": None,
                "negate": self.negate,
                "disabled": False,
                "type": "phrase",
                "key": self.field,
                "params": {"query": self.value},
                "indexRefName": ref_name,
            },
            "query": {"match_phrase": {self.field: self.value}},
            "$state": {"store": "appState"},
        }
        return built, {"name": ref_name, "type": "index-pattern"}


def search_source(
    query: str, filters: Sequence[PhraseFilter], index_pattern_id: str | None
) -> tuple[str, list[dict[str, str]]]:
    """``searchSourceJSON`` and its references; without an index pattern, none (a saved search feeds it)."""
    source: dict[str, Any] = {"query": {"query": query, "language": "lucene"}, "filter": []}
    references: list[dict[str, str]] = []
    if index_pattern_id is not None:
        source["indexRefName"] = INDEX_REF
        references.append(reference(INDEX_REF, "index-pattern", index_pattern_id))
    for position, item in enumerate(filters):
        if index_pattern_id is None:
            raise ValueError("a filter needs the search source's index pattern")
        built, ref = item.build(position)
        source["filter"].append(built)
        references.append({**ref, "id": index_pattern_id})
    return json_text(source), references


def saved_search(
    object_id_: str,
    *,
    title: str,
    description: str,
    index_pattern_id: str,
    query: str,
    filters: Sequence[PhraseFilter] = (),
    columns: Sequence[str],
    sort: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """A Discover saved search: Lucene ``query``, ``filters``, ``columns`` and ``sort``."""
    source, references = search_source(query, filters, index_pattern_id)
    return saved_object_line(
        "search",
        object_id_,
        {
            "title": title,
            "description": description,
            "hits": 0,
            "columns": list(columns),
            "sort": [[name, direction] for name, direction in sort],
            "version": 1,
            "kibanaSavedObjectMeta": {"searchSourceJSON": source},
        },
        references,
    )


@dataclass(frozen=True)
class Panel:
    """A dashboard panel showing a saved object, at grid position (``x``, ``y``), ``w`` by ``h`` cells."""

    kind: str
    target: str
    x: int
    y: int
    w: int
    h: int


def dashboard(
    object_id_: str,
    *,
    title: str,
    description: str,
    panels: Iterable[Panel],
    time_from: str,
    refresh_ms: int,
) -> dict[str, Any]:
    """A dashboard of ``panels`` that opens on ``time_from`` to now and refreshes every ``refresh_ms``."""
    built: list[dict[str, Any]] = []
    references: list[dict[str, str]] = []
    for position, panel in enumerate(panels):
        index = str(position + 1)
        built.append(
            {
                "version": OSD_VERSION,
                "gridData": {"x": panel.x, "y": panel.y, "w": panel.w, "h": panel.h, "i": index},
                "panelIndex": index,
                "embeddableConfig": {},
                "panelRefName": f"panel_{position}",
            }
        )
        references.append(reference(f"panel_{position}", panel.kind, panel.target))
    return saved_object_line(
        "dashboard",
        object_id_,
        {
            "title": title,
            "description": description,
            "hits": 0,
            "version": 1,
            "panelsJSON": json_text(built),
            "optionsJSON": json_text({"hidePanelTitles": False, "useMargins": True}),
            "timeRestore": True,
            "timeFrom": time_from,
            "timeTo": "now",
            "refreshInterval": {"pause": False, "value": refresh_ms},
            "kibanaSavedObjectMeta": {"searchSourceJSON": search_source("", (), None)[0]},
        },
        references,
    )


def encode_ndjson(objects: Iterable[Mapping[str, Any]]) -> bytes:
    """One JSON object per line, UTF-8, keys sorted, as an import file (and a stable diff)."""
    return b"".join(
        json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        for item in objects
    )
