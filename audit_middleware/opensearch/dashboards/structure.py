"""What an import file must hold for OpenSearch Dashboards 2.19, and which fields it uses.

``problems(objects)`` lists everything that would make Dashboards reject a line, skip
a migration wrongly, or fail when it loads an object: the five keys of a line, the
``migrationVersion`` of each type, unique ids, the JSON-encoded attributes, and every
reference name the loaders look up (``indexRefName``, ``meta.indexRefName``,
``savedSearchRefName``, ``indexPatternRefName``, ``panelRefName``) pointing at an
object of the right type in the same file. ``validate`` raises on any of them.

``field_uses(objects)`` says which field each object uses and how: aggregated (terms
and date histograms, sorting, control options), searched (queries, filters, controls'
filters) or shown (columns); ``problems`` checks them against the index pattern's
field list, and the integration tests against the live mapping.

This module is long because each saved-object type has its own attribute rules and
reference names, and one pass over them yields both the problems and the field uses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from audit_middleware.errors import AuditValidationError
from audit_middleware.opensearch.dashboards.objects import (
    DASHBOARD_COLUMNS,
    INDEX_REF,
    MIGRATION_VERSIONS,
    SAVED_SEARCH_REF,
)

__all__ = ["FieldUse", "Use", "field_uses", "lucene_fields", "problems", "validate"]

Use = Literal["aggregate", "search", "show"]

LINE_KEYS = frozenset({"type", "id", "attributes", "references", "migrationVersion"})
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_SEMVER = re.compile(r"\d+\.\d+\.\d+\Z")
_FILTER_REF = re.compile(r"kibanaSavedObjectMeta\.searchSourceJSON\.filter\[(\d+)\]\.meta\.index\Z")
# Bucket schemas each visualization type accepts (its vis type definition).
_SCHEMAS: dict[str, frozenset[str]] = {
    "histogram": frozenset({"metric", "segment", "group", "split"}),
    "horizontal_bar": frozenset({"metric", "segment", "group", "split"}),
    "line": frozenset({"metric", "segment", "group", "split"}),
    "area": frozenset({"metric", "segment", "group", "split"}),
    "table": frozenset({"metric", "bucket", "split"}),
    "pie": frozenset({"metric", "segment", "split"}),
    "input_control_vis": frozenset(),
}
_BUCKET_USES: dict[str, Use] = {"terms": "aggregate", "date_histogram": "aggregate"}


@dataclass(frozen=True)
class FieldUse:
    """One saved object's use of one field."""

    field: str
    use: Use
    title: str
    where: str


def _json(value: Any, what: str, found: list[str]) -> Any:
    if not isinstance(value, str):
        found.append(f"{what} must be a JSON string")
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        found.append(f"{what} is not valid JSON: {exc}")
        return None


def lucene_fields(query: str) -> list[str]:
    """The field names a Lucene query string names (``field:value``), quoted text skipped."""
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)
    return [match.group(1) for match in re.finditer(r"(?<![\w.@\\])([A-Za-z_@][\w.@]*):", unquoted)]


@dataclass(frozen=True)
class _Line:
    """One saved object being checked: where it is, its title, attributes and references by name."""

    checker: _Checker
    label: str
    title: str
    attributes: Mapping[str, Any]
    references: Mapping[str, Mapping[str, Any]]

    def problem(self, text: str) -> None:
        self.checker.problem(self.label, text)

    def use(self, name: str, use: Use, where: str) -> None:
        self.checker.uses.append(FieldUse(name, use, self.title, where))

    def resolve(self, name: Any, kinds: set[str]) -> None:
        """Check that ``name`` is a reference of this object to one of ``kinds``."""
        ref = self.references.get(name) if isinstance(name, str) else None
        if ref is None:
            self.problem(f"no reference named {name!r}: Dashboards fails to load the object")
        elif ref["type"] not in kinds:
            self.problem(f"reference {name!r} must point at {' or '.join(sorted(kinds))}, not {ref['type']}")


class _Checker:
    """One pass over a file: problems, and the fields each object uses."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = items
        self.found: list[str] = []
        self.uses: list[FieldUse] = []
        self.known = {(item.get("type"), item.get("id")) for item in items if isinstance(item, Mapping)}

    def problem(self, label: str, text: str) -> None:
        self.found.append(f"{label}: {text}")

    def run(self) -> None:
        seen: set[tuple[Any, Any]] = set()
        for number, item in enumerate(self.items, start=1):
            if not isinstance(item, Mapping):
                self.found.append(f"line {number}: not a JSON object")
                continue
            key = (item.get("type"), item.get("id"))
            label = f"line {number} ({item.get('type')} {item.get('id')})"
            if key in seen:
                self.problem(label, "duplicate type and id: Dashboards refuses the whole file")
            seen.add(key)
            self.line(label, item)

    def line(self, label: str, item: Mapping[str, Any]) -> None:
        if set(item) != LINE_KEYS:
            self.problem(label, f"keys must be exactly {sorted(LINE_KEYS)}, not {sorted(item)}")
        kind, object_id = item.get("type"), item.get("id")
        if kind not in MIGRATION_VERSIONS:
            self.problem(label, f"type must be one of {sorted(MIGRATION_VERSIONS)}")
            return
        if not isinstance(object_id, str) or not _UUID.match(object_id):
            self.problem(label, "id must be a lowercase UUID (Discover's CSV report needs one)")
        if item.get("migrationVersion") != {kind: MIGRATION_VERSIONS[kind]}:
            self.problem(label, f"migrationVersion must be {{{kind!r}: {MIGRATION_VERSIONS[kind]!r}}}")
        references = self.references(label, item.get("references"))
        attributes = item.get("attributes")
        if not isinstance(attributes, Mapping):
            self.problem(label, "attributes must be an object")
            return
        title = attributes.get("title")
        if not isinstance(title, str) or not title.strip():
            self.problem(label, "attributes.title must be a non-empty string")
            title = label
        check = {
            "index-pattern": self.index_pattern,
            "search": self.search,
            "visualization": self.visualization,
            "dashboard": self.dashboard,
        }[kind]
        check(_Line(self, label, title, attributes, references))

    def references(self, label: str, value: Any) -> dict[str, Mapping[str, Any]]:
        if not isinstance(value, list):
            self.problem(label, "references must be a list")
            return {}
        named: dict[str, Mapping[str, Any]] = {}
        for ref in value:
            if not (isinstance(ref, Mapping) and set(ref) == {"name", "type", "id"}):
                self.problem(label, f"a reference must be {{name, type, id}}, not {ref!r}")
                continue
            if ref["name"] in named:
                self.problem(label, f"reference name {ref['name']!r} is used twice")
            named[ref["name"]] = ref
            if (ref["type"], ref["id"]) not in self.known:
                self.problem(
                    label, f"reference {ref['name']!r} points at {ref['type']} {ref['id']}, not in the file"
                )
        return named

    def fields_of(self, pattern: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
        specs = _json(pattern.get("fields"), "index pattern fields", [])
        return {spec["name"]: spec for spec in specs or () if isinstance(spec, Mapping) and "name" in spec}

    def index_pattern(self, line: _Line) -> None:
        specs = _json(line.attributes.get("fields"), f"{line.label}: attributes.fields", self.found)
        if not isinstance(specs, list) or not specs:
            line.problem("fields must list the field specs (Discover's CSV report reads them)")
            return
        for spec in specs:
            required = {
                "name",
                "type",
                "searchable",
                "aggregatable",
                "readFromDocValues",
                "count",
                "scripted",
            }
            if not isinstance(spec, Mapping) or not required <= set(spec):
                line.problem(f"field spec {spec!r} lacks one of {sorted(required)}")
        by_name = self.fields_of(line.attributes)
        time_field = line.attributes.get("timeFieldName")
        if by_name.get(str(time_field), {}).get("type") != "date":
            line.problem(f"timeFieldName {time_field!r} is not a date field of the pattern")
        formats = _json(
            line.attributes.get("fieldFormatMap"), f"{line.label}: attributes.fieldFormatMap", self.found
        )
        for name, spec in (formats or {}).items():
            if name not in by_name:
                line.problem(f"field format for {name!r}, which the pattern does not have")
            if not (isinstance(spec, Mapping) and isinstance(spec.get("id"), str)):
                line.problem(f"field format of {name!r} needs an id")

    def search_source(self, line: _Line, *, needs_index: bool) -> None:
        meta = line.attributes.get("kibanaSavedObjectMeta")
        raw = meta.get("searchSourceJSON") if isinstance(meta, Mapping) else None
        source = _json(raw, f"{line.label}: kibanaSavedObjectMeta.searchSourceJSON", self.found)
        if not isinstance(source, Mapping):
            return
        if "index" in source:
            line.problem("the search source names its index inline; use indexRefName and a reference")
        if needs_index:
            if source.get("indexRefName") != INDEX_REF:
                line.problem(f"the search source needs indexRefName {INDEX_REF!r}")
            line.resolve(source.get("indexRefName"), {"index-pattern"})
        query = source.get("query")
        if not (
            isinstance(query, Mapping)
            and query.get("language") == "lucene"
            and isinstance(query.get("query"), str)
        ):
            line.problem("the query must be {query: <Lucene string>, language: lucene}")
        else:
            for name in lucene_fields(query["query"]):
                line.use(name, "search", "query")
        filters = source.get("filter", [])
        if not isinstance(filters, list):
            line.problem("the search source's filter must be a list")
            return
        for position, item in enumerate(filters):
            self.filter(line, position, item)

    def filter(self, line: _Line, position: int, item: Any) -> None:
        meta = item.get("meta") if isinstance(item, Mapping) else None
        if not (isinstance(meta, Mapping) and isinstance(item.get("query"), Mapping)):
            line.problem(f"filter {position} must be {{meta, query: <query DSL>}}")
            return
        ref_name = meta.get("indexRefName")
        if ref_name is not None:
            matched = _FILTER_REF.match(ref_name)
            if not matched or int(matched.group(1)) != position:
                line.problem(f"filter {position} has indexRefName {ref_name!r}")
            line.resolve(ref_name, {"index-pattern"})
        for name in _dsl_fields(item["query"]):
            line.use(name, "search", f"filter {position}")

    def search(self, line: _Line) -> None:
        columns = line.attributes.get("columns")
        if not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)):
            line.problem("columns must be a list of field names")
        else:
            for column in columns:
                if column != "_source":
                    line.use(column, "show", "column")
        sort = line.attributes.get("sort")
        if not (isinstance(sort, list) and all(_is_sort_pair(pair) for pair in sort)):
            line.problem("sort must be a list of [field, asc|desc] pairs")
        else:
            for name, _ in sort:
                line.use(name, "aggregate", "sort")
        self.search_source(line, needs_index=True)

    def visualization(self, line: _Line) -> None:
        state = _json(line.attributes.get("visState"), f"{line.label}: attributes.visState", self.found)
        _json(line.attributes.get("uiStateJSON"), f"{line.label}: attributes.uiStateJSON", self.found)
        if not isinstance(state, Mapping):
            return
        kind = state.get("type")
        if state.get("title") != line.title:
            line.problem("visState.title must equal the title")
        if kind not in _SCHEMAS:
            line.problem(f"visState.type {kind!r} is not one this bundle knows")
            return
        on_saved_search = "savedSearchRefName" in line.attributes
        if on_saved_search:
            if line.attributes["savedSearchRefName"] != SAVED_SEARCH_REF:
                line.problem(f"savedSearchRefName must be {SAVED_SEARCH_REF!r}")
            line.resolve(line.attributes["savedSearchRefName"], {"search"})
        self.search_source(
            line,
            needs_index=kind != "input_control_vis" and not on_saved_search,
        )
        if kind == "input_control_vis":
            self.controls(line, state.get("params", {}))
        else:
            self.aggs(line, kind, state)

    def aggs(self, line: _Line, kind: str, state: Mapping[str, Any]) -> None:
        aggs = state.get("aggs")
        if not isinstance(aggs, list) or not aggs:
            line.problem("visState.aggs must list the aggregations")
            return
        ids = [agg.get("id") for agg in aggs if isinstance(agg, Mapping)]
        if len(set(ids)) != len(aggs) or not all(isinstance(i, str) for i in ids):
            line.problem("every aggregation needs its own string id")
        metrics = {
            agg.get("id") for agg in aggs if isinstance(agg, Mapping) and agg.get("schema") == "metric"
        }
        for agg in aggs:
            if not isinstance(agg, Mapping):
                continue
            if agg.get("schema") not in _SCHEMAS[kind]:
                line.problem(
                    f"aggregation {agg.get('id')} has schema {agg.get('schema')!r}, not one of {kind}"
                )
            field_name = agg.get("params", {}).get("field")
            if agg.get("type") in _BUCKET_USES and isinstance(field_name, str):
                line.use(field_name, _BUCKET_USES[agg["type"]], f"{agg['type']} aggregation")
            order_by = agg.get("params", {}).get("orderBy")
            if agg.get("type") == "terms" and order_by not in (*metrics, "_key"):
                line.problem(f"terms aggregation {agg.get('id')} orders by {order_by!r}, no metric of it")
        for series in state.get("params", {}).get("seriesParams", ()):
            if series.get("data", {}).get("id") not in metrics:
                line.problem("seriesParams data.id must be a metric aggregation's id")

    def controls(self, line: _Line, params: Mapping[str, Any]) -> None:
        controls = params.get("controls")
        if not isinstance(controls, list) or not controls:
            line.problem("an input-control panel needs controls")
            return
        for position, control in enumerate(controls):
            if "indexPattern" in control:
                line.problem(f"control {position} names its index pattern inline")
            if control.get("indexPatternRefName") != f"control_{position}_index_pattern":
                line.problem(f"control {position} needs indexPatternRefName control_{position}_index_pattern")
            line.resolve(control.get("indexPatternRefName"), {"index-pattern"})
            name = control.get("fieldName")
            if isinstance(name, str):
                # A list control reads its options with a terms aggregation and filters with match_phrase.
                line.use(name, "aggregate", f"control {control.get('label')!r}")
                line.use(name, "search", f"control {control.get('label')!r}")

    def dashboard(self, line: _Line) -> None:
        panels = _json(line.attributes.get("panelsJSON"), f"{line.label}: attributes.panelsJSON", self.found)
        _json(line.attributes.get("optionsJSON"), f"{line.label}: attributes.optionsJSON", self.found)
        for position, panel in enumerate(panels or ()):
            grid = panel.get("gridData", {})
            if not _SEMVER.match(str(panel.get("version"))):
                line.problem(f"panel {position} needs a semver version")
            if grid.get("i") != panel.get("panelIndex") or not isinstance(panel.get("panelIndex"), str):
                line.problem(f"panel {position}: gridData.i must equal panelIndex (a string)")
            if (
                any(not isinstance(grid.get(k), int) for k in "xywh")
                or grid["x"] + grid["w"] > DASHBOARD_COLUMNS
            ):
                line.problem(f"panel {position} does not fit the {DASHBOARD_COLUMNS}-column grid")
            if "id" in panel or "type" in panel:
                line.problem(f"panel {position} names its object inline; use panelRefName")
            line.resolve(panel.get("panelRefName"), {"visualization", "search"})
        if line.attributes.get("timeRestore") is True and not (
            isinstance(line.attributes.get("timeFrom"), str)
            and isinstance(line.attributes.get("timeTo"), str)
        ):
            line.problem("timeRestore needs timeFrom and timeTo")
        refresh = line.attributes.get("refreshInterval")
        if not (
            isinstance(refresh, Mapping)
            and isinstance(refresh.get("pause"), bool)
            and isinstance(refresh.get("value"), int)
        ):
            line.problem("refreshInterval must be {pause: bool, value: milliseconds}")
        self.search_source(line, needs_index=False)

    def check_uses(self) -> None:
        patterns = [
            item for item in self.items if isinstance(item, Mapping) and item.get("type") == "index-pattern"
        ]
        if len(patterns) != 1:
            self.found.append(f"the file needs exactly one index pattern, not {len(patterns)}")
            return
        by_name = self.fields_of(patterns[0].get("attributes", {}))
        for use in self.uses:
            spec = by_name.get(use.field)
            if spec is None:
                self.found.append(
                    f"{use.title}: {use.where} uses {use.field!r}, not a field of the index pattern"
                )
            elif use.use == "aggregate" and not spec.get("aggregatable"):
                self.found.append(
                    f"{use.title}: {use.where} aggregates {use.field!r}, which is not aggregatable"
                )
            elif use.use == "search" and not spec.get("searchable"):
                self.found.append(f"{use.title}: {use.where} searches {use.field!r}, which is not searchable")


def _is_sort_pair(pair: Any) -> bool:
    return (
        isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and pair[1] in ("asc", "desc")
    )


def _dsl_fields(query: Any) -> Iterator[str]:
    """Field names in a query DSL clause (the keys under leaf queries such as match_phrase)."""
    if not isinstance(query, Mapping):
        return
    for kind, body in query.items():
        if kind == "bool" and isinstance(body, Mapping):
            for clauses in body.values():
                for clause in clauses if isinstance(clauses, list) else [clauses]:
                    yield from _dsl_fields(clause)
        elif kind in ("exists",) and isinstance(body, Mapping):
            yield str(body.get("field"))
        elif isinstance(body, Mapping):
            yield from (str(name) for name in body)


def _run(items: Iterable[Any]) -> _Checker:
    checker = _Checker(list(items))
    checker.run()
    checker.check_uses()
    return checker


def problems(items: Iterable[Any]) -> list[str]:
    """Everything wrong with an import file's objects, one sentence each (empty: importable)."""
    return _run(items).found


def validate(items: Iterable[Any]) -> None:
    """Raise ``AuditValidationError`` listing every problem of an import file's objects."""
    found = problems(items)
    if found:
        raise AuditValidationError("the saved objects would not import cleanly:\n  " + "\n  ".join(found))


def field_uses(items: Iterable[Any]) -> list[FieldUse]:
    """Every field the objects use, and how (aggregated, searched, shown)."""
    return _run(items).uses
