"""Builders for the visualizations of OpenSearch Dashboards 2.19: count charts and input controls.

A visState holds the chart type, its aggregations (a count metric with id ``1``, then
bucket aggregations in the schemas the type accepts) and the type's parameters, with
the defaults of Dashboards' vis type definitions (``vis_type_vislib``, ``vis_type_table``,
``input_control_vis``). An input control names its index pattern through
``indexPatternRefName`` (``control_<i>_index_pattern``) and a reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from audit_middleware.opensearch.dashboards.objects import (
    SAVED_SEARCH_REF,
    json_text,
    reference,
    saved_object_line,
    search_source,
)

__all__ = ["Control", "DateHistogram", "Terms", "input_controls", "visualization"]


def _agg_config(agg_id: str, kind: str, schema: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"id": agg_id, "enabled": True, "type": kind, "schema": schema, "params": params}


@dataclass(frozen=True)
class Terms:
    """A terms bucket aggregation: the ``size`` most frequent values of ``field``."""

    field: str
    size: int
    label: str

    def agg(self, agg_id: str, schema: str) -> dict[str, Any]:
        """The agg config in a visState."""
        return _agg_config(
            agg_id,
            "terms",
            schema,
            {
                "field": self.field,
                "orderBy": "1",
                "order": "desc",
                "size": self.size,
                "otherBucket": False,
                "otherBucketLabel": "Other",
                "missingBucket": False,
                "missingBucketLabel": "Missing",
                "customLabel": self.label,
            },
        )


@dataclass(frozen=True)
class DateHistogram:
    """A date histogram over ``field`` with Dashboards' automatic interval."""

    field: str

    def agg(self, agg_id: str, schema: str) -> dict[str, Any]:
        """The agg config in a visState."""
        return _agg_config(
            agg_id,
            "date_histogram",
            schema,
            {
                "field": self.field,
                "timeRange": {"from": "now-24h", "to": "now"},
                "useNormalizedOpenSearchInterval": True,
                "scaleMetricValues": False,
                "interval": "auto",
                "drop_partials": False,
                "min_doc_count": 1,
                "extended_bounds": {},
            },
        )


_COUNT = _agg_config("1", "count", "metric", {})


def _axes(kind: str, *, horizontal: bool) -> dict[str, Any]:
    """Axes and series of the point-series charts (vislib defaults of each type)."""
    return {
        "type": kind,
        "grid": {"categoryLines": False},
        "categoryAxes": [
            {
                "id": "CategoryAxis-1",
                "type": "category",
                "position": "left" if horizontal else "bottom",
                "show": True,
                "style": {},
                "scale": {"type": "linear"},
                "labels": {"show": True, "filter": not horizontal, "truncate": 200 if horizontal else 100},
                "title": {},
            }
        ],
        "valueAxes": [
            {
                "id": "ValueAxis-1",
                "name": "LeftAxis-1",
                "type": "value",
                "position": "bottom" if horizontal else "left",
                "show": True,
                "style": {},
                "scale": {"type": "linear", "mode": "normal"},
                "labels": {
                    "show": True,
                    "rotate": 75 if horizontal else 0,
                    "filter": horizontal,
                    "truncate": 100,
                },
                "title": {"text": "Count"},
            }
        ],
        "seriesParams": [
            {
                "show": True,
                "type": "histogram",
                "mode": "normal" if horizontal else "stacked",
                "data": {"label": "Count", "id": "1"},
                "valueAxis": "ValueAxis-1",
                "drawLinesBetweenPoints": True,
                "lineWidth": 2,
                "showCircles": True,
            }
        ],
        "addTooltip": True,
        "addLegend": True,
        "legendPosition": "right",
        "times": [],
        "addTimeMarker": False,
        "labels": {"show": False},
        "thresholdLine": {"show": False, "value": 10, "width": 1, "style": "full", "color": "#E7664C"},
    }


def _vis_params(kind: str) -> dict[str, Any]:
    if kind == "histogram":
        return _axes("histogram", horizontal=False)
    if kind == "horizontal_bar":
        return _axes("histogram", horizontal=True)
    if kind == "table":
        return {
            "perPage": 10,
            "showPartialRows": False,
            "showMetricsAtAllLevels": False,
            "showTotal": False,
            "totalFunc": "sum",
            "percentageCol": "",
        }
    if kind == "pie":
        return {
            "type": "pie",
            "addTooltip": True,
            "addLegend": True,
            "legendPosition": "right",
            "isDonut": True,
            "labels": {"show": True, "values": True, "last_level": True, "truncate": 100},
        }
    raise ValueError(f"no parameters for visualization type {kind!r}")


# Which schema each bucket aggregation takes, by visualization type.
_BUCKET_SCHEMAS: dict[str, tuple[str, ...]] = {
    "histogram": ("segment", "group"),
    "horizontal_bar": ("segment", "group"),
    "table": ("bucket", "bucket"),
    "pie": ("segment",),
}


def visualization(
    object_id_: str,
    *,
    title: str,
    description: str,
    kind: str,
    buckets: Sequence[Terms | DateHistogram],
    index_pattern_id: str | None = None,
    saved_search_id: str | None = None,
    query: str = "",
) -> dict[str, Any]:
    """A count chart of ``kind`` (``histogram``, ``horizontal_bar``, ``table``, ``pie``).

    The data comes from the index pattern, or from a saved search (its query and filters).
    """
    if (index_pattern_id is None) == (saved_search_id is None):
        raise ValueError("a visualization reads either an index pattern or a saved search")
    schemas = _BUCKET_SCHEMAS[kind]
    if len(buckets) > len(schemas):
        raise ValueError(f"{kind} takes at most {len(schemas)} bucket aggregations")
    aggs = [dict(_COUNT)] + [
        bucket.agg(str(position + 2), schemas[position]) for position, bucket in enumerate(buckets)
    ]
    source, references = search_source(query, (), index_pattern_id)
    attributes: dict[str, Any] = {
        "title": title,
        "description": description,
        "version": 1,
        "uiStateJSON": "{}",
        "visState": json_text({"title": title, "type": kind, "aggs": aggs, "params": _vis_params(kind)}),
        "kibanaSavedObjectMeta": {"searchSourceJSON": source},
    }
    if saved_search_id is not None:
        attributes["savedSearchRefName"] = SAVED_SEARCH_REF
        references.append(reference(SAVED_SEARCH_REF, "search", saved_search_id))
    return saved_object_line("visualization", object_id_, attributes, references)


@dataclass(frozen=True)
class Control:
    """A list control of an input-control panel: pick values of ``field`` (a keyword)."""

    field: str
    label: str


def input_controls(
    object_id_: str, *, title: str, description: str, index_pattern_id: str, controls: Sequence[Control]
) -> dict[str, Any]:
    """An input-control panel; each control turns its selection into a filter on its field."""
    built = [
        {
            "id": f"control-{position}",
            "fieldName": control.field,
            "parent": "",
            "label": control.label,
            "type": "list",
            "options": {
                "type": "terms",
                "multiselect": True,
                "dynamicOptions": True,
                "size": 10,
                "order": "desc",
            },
            "indexPatternRefName": f"control_{position}_index_pattern",
        }
        for position, control in enumerate(controls)
    ]
    params = {"controls": built, "updateFiltersOnChange": True, "useTimeFilter": True, "pinFilters": False}
    return saved_object_line(
        "visualization",
        object_id_,
        {
            "title": title,
            "description": description,
            "version": 1,
            "uiStateJSON": "{}",
            "visState": json_text(
                {"title": title, "type": "input_control_vis", "aggs": [], "params": params}
            ),
            "kibanaSavedObjectMeta": {"searchSourceJSON": search_source("", (), None)[0]},
        },
        [
            reference(f"control_{position}_index_pattern", "index-pattern", index_pattern_id)
            for position in range(len(controls))
        ],
    )
