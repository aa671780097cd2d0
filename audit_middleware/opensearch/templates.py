"""The component template (settings + mappings) and the index template of the audit data streams.

Field decisions:

* ECS fields take their type, ``ignore_above`` and multi-fields from
  ``ecs_fields.json`` (extracted from the ECS field list by ``tools/ecs_extract.py``).
* ``audit.changes.before`` / ``.after`` and ``audit.details`` are ``flat_object``: one
  app's ``{"size": 10}`` and another's ``{"size": "large"}`` never fight over a mapping,
  and the number of mapped fields stays fixed whatever the apps send.
* Root ``dynamic: false``: a field the template does not know is kept in ``_source``
  (shown in detail views and exports) but not indexed. ``strict`` would reject the
  whole record, and an audit trail must not lose a record over an extra field;
  ``true`` would let any app grow the mapping until it hits the field limit.
* Case-insensitive search: names and emails get a ``.lower`` keyword subfield whose
  normalizer applies ``lowercase`` and ``asciifolding`` (``Éva@X.com`` matches
  ``eva@x.com``); a ``term`` or ``prefix`` query on it is case- and accent-insensitive.
* Word-prefix search ("data" finds "Prod Database"): resource, project, target names and
  action labels get a ``.text`` subfield (standard tokenizer, same folding) with
  ``index_prefixes``, so ``match_bool_prefix`` is fast. ECS fields keep the ECS
  ``.text`` (``match_only_text``) multi-field where ECS defines one.
* Keywords are capped with ``ignore_above`` (1024, as ECS does): an oversized value
  stays in ``_source`` instead of failing the document. The fields queries scope and
  filter on (``organization.id``, ``audit.project.id``) never hold one: an over-long id
  is stored as its hashed key (``model.tenancy``), the id itself in the unmapped
  ``audit.organization.original_id`` / ``audit.project.original_id``.

* Index sorting: every backing index keeps its documents sorted by ``@timestamp`` then
  ``event.id``, both descending, the order every read asks for. A newest-first page then
  stops after the first matching documents of each segment instead of collecting and
  sorting every match of the tenant. Sorting is fixed when an index is created, so
  ``setup`` rolls a stream over when its write index predates it (``CREATION_SETTINGS``).

``TEMPLATE_REVISION`` is the templates' ``version``: bump it with every change here so
``audit-middleware setup`` reports them as updated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from audit_middleware.model import ecs
from audit_middleware.opensearch.chains import CHAIN_FIELDS
from audit_middleware.opensearch.tiers import validate_name

TEMPLATE_REVISION = 6  # 3: retention, alert and dashboard fields; 4: span.id; 5: index sort; 6: audit.chain
# Above the 100 that catch-all templates commonly use, so ours wins for "{prefix}-*".
INDEX_TEMPLATE_PRIORITY = 500
MANAGED_BY = "audit-middleware"
NORMALIZER = "audit_folded"
TEXT_ANALYZER = "audit_folded_text"
KEYWORD_LIMIT = 1024

# The order of every read (newest first, ties by id), so sorted reads can stop early.
INDEX_SORT: dict[str, list[str]] = {"field": ["@timestamp", "event.id"], "order": ["desc", "desc"]}
# Settings an index takes only when it is created (flat names): an existing write index
# that differs in one of them is rolled over by setup, so the next one has them.
CREATION_SETTINGS = ("index.number_of_shards", "index.sort.field", "index.sort.order")

_KEYWORD: dict[str, Any] = {"type": "keyword", "ignore_above": KEYWORD_LIMIT}
_FLAT_OBJECT: dict[str, Any] = {"type": "flat_object"}

# Product fields (the ``audit.*`` namespace) and their mappings, by flat name.
AUDIT_FIELDS: dict[str, dict[str, Any]] = {
    "audit.actor.kind": _KEYWORD,
    "audit.action.label": _KEYWORD,
    "audit.action.group": _KEYWORD,
    # The action-type filter (create, update, delete, start-stop, account, team, ...).
    "audit.action.filter": _KEYWORD,
    "audit.project.id": _KEYWORD,
    "audit.project.name": _KEYWORD,
    "audit.resource.type": _KEYWORD,
    "audit.resource.id": _KEYWORD,
    "audit.resource.name": _KEYWORD,
    # An object array, not nested: "which events touched target X" needs no per-target join.
    "audit.targets.type": _KEYWORD,
    "audit.targets.id": _KEYWORD,
    "audit.targets.name": _KEYWORD,
    # What the alert monitors count and group by (model.alerts): targets of an operation,
    # and the roles a Permissions Changed record granted and revoked.
    "audit.target_count": {"type": "integer"},
    "audit.permissions.added": _KEYWORD,
    "audit.permissions.removed": _KEYWORD,
    "audit.changes.before": _FLAT_OBJECT,
    "audit.changes.after": _FLAT_OBJECT,
    "audit.changes.fields": _KEYWORD,
    "audit.details": _FLAT_OBJECT,
    "audit.source.forwarded": _KEYWORD,
    "audit.http.route": _KEYWORD,
    "audit.tier": _KEYWORD,
}

# Keyword fields that also get a case- and accent-insensitive ``.lower`` subfield.
LOWERCASE_FIELDS = frozenset(
    {
        "event.action",
        "user.email",
        "user.name",
        "user.effective.email",
        "user.effective.name",
        "organization.name",
        "audit.action.label",
        "audit.project.name",
        "audit.resource.name",
        "audit.targets.name",
    }
)

# Fields that also get a word- and prefix-searchable ``.text`` subfield.
TEXT_FIELDS = frozenset(
    {"audit.action.label", "audit.project.name", "audit.resource.name", "audit.targets.name"}
)


def _ecs_mapping(definition: dict[str, Any]) -> dict[str, Any]:
    mapping: dict[str, Any] = {"type": definition["type"]}
    if "ignore_above" in definition:
        mapping["ignore_above"] = definition["ignore_above"]
    multi_fields = {multi["name"]: {"type": multi["type"]} for multi in definition.get("multi_fields", ())}
    if multi_fields:
        mapping["fields"] = multi_fields
    return mapping


def field_mappings() -> dict[str, dict[str, Any]]:
    """Every mapped field of the record by flat name, subfields included (as ``fields``)."""
    flat = {name: _ecs_mapping(definition) for name, definition in ecs.fields().items()}
    flat.update({name: dict(mapping) for name, mapping in AUDIT_FIELDS.items()})
    flat.update({name: dict(mapping) for name, mapping in CHAIN_FIELDS.items()})  # the hash chain's link
    for name in LOWERCASE_FIELDS:
        flat[name].setdefault("fields", {})["lower"] = {
            "type": "keyword",
            "normalizer": NORMALIZER,
            "ignore_above": KEYWORD_LIMIT,
        }
    for name in TEXT_FIELDS:
        flat[name].setdefault("fields", {})["text"] = {
            "type": "text",
            "analyzer": TEXT_ANALYZER,
            "index_prefixes": {"min_chars": 1, "max_chars": 10},
        }
    return flat


def _nest(flat: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Turn ``{"a.b": m}`` into ``{"a": {"properties": {"b": m}}}``."""
    root: dict[str, Any] = {}
    for name in sorted(flat):
        *parents, leaf = name.split(".")
        node = root
        for parent in parents:
            node = node.setdefault(parent, {"properties": {}})["properties"]
        node[leaf] = flat[name]
    return root


def flatten(properties: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The leaf mappings of a ``properties`` tree by dotted name (the inverse of nesting)."""
    leaves: dict[str, Any] = {}
    for name, mapping in properties.items():
        if "properties" in mapping:
            leaves.update(flatten(mapping["properties"], f"{prefix}{name}."))
        else:
            leaves[f"{prefix}{name}"] = mapping
    return leaves


def build_mappings() -> dict[str, Any]:
    """The mappings of every backing index."""
    return {"dynamic": False, "properties": _nest(field_mappings())}


def build_settings(*, shards: int = 1, replicas: int | None = 1) -> dict[str, Any]:
    """Index settings; ``replicas=None`` leaves the replica count to the cluster default."""
    index: dict[str, Any] = {
        "number_of_shards": shards,
        "sort": {key: list(values) for key, values in INDEX_SORT.items()},
        "analysis": {
            # Both filters come from the analysis-common module, present on every distribution.
            "normalizer": {NORMALIZER: {"type": "custom", "filter": ["lowercase", "asciifolding"]}},
            "analyzer": {
                TEXT_ANALYZER: {
                    "type": "custom",
                    "tokenizer": "standard",
                    "filter": ["lowercase", "asciifolding"],
                }
            },
        },
    }
    if replicas is not None:
        index["number_of_replicas"] = replicas
    return {"index": index}


def _meta() -> dict[str, Any]:
    return {"managed_by": MANAGED_BY, "revision": TEMPLATE_REVISION}


def component_template_name(prefix: str) -> str:
    """The component template holding settings and mappings, e.g. ``audit-events-mappings``."""
    return f"{validate_name(prefix, 'prefix')}-events-mappings"


def index_template_name(prefix: str) -> str:
    """The composable index template of the data streams, e.g. ``audit-events``."""
    return f"{validate_name(prefix, 'prefix')}-events"


def build_component_template(*, shards: int = 1, replicas: int | None = 1) -> dict[str, Any]:
    """The body of ``PUT _component_template/<component_template_name>``."""
    return {
        "template": {
            "settings": build_settings(shards=shards, replicas=replicas),
            "mappings": build_mappings(),
        },
        "version": TEMPLATE_REVISION,
        "_meta": _meta(),
    }


def build_index_template(prefix: str) -> dict[str, Any]:
    """The body of ``PUT _index_template/<index_template_name>``: data streams ``{prefix}-*``.

    A data stream template claims its pattern: while it exists, no regular index named
    ``{prefix}-...`` can be created, so pick a prefix used for nothing else.
    """
    return {
        "index_patterns": [f"{validate_name(prefix, 'prefix')}-*"],
        # Spelled out as OpenSearch stores it, so stored and desired compare equal.
        "data_stream": {"timestamp_field": {"name": "@timestamp"}},
        "composed_of": [component_template_name(prefix)],
        "priority": INDEX_TEMPLATE_PRIORITY,
        "version": TEMPLATE_REVISION,
        "_meta": _meta(),
    }
