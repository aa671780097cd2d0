"""The bundled saved objects: the "Audit Logs" dashboard, its saved searches and visualizations.

Everything the objects name comes from the definitions the rest of the package uses:
field names are checked against the index template's mappings (``_field`` refuses one
the template does not map), action ids against the action catalog, resource types
against the built-in list, and the action-type control reads ``audit.action.filter``
(``Action.filter_group``). ``saved_objects(prefix)`` builds them for the data streams
``{prefix}-*``; their ids are stable UUIDs of the prefix and a name, so re-importing
replaces them and two prefixes can live side by side in one Dashboards tenant.

``BUNDLE_FILE`` beside this module is ``ndjson()`` for the default prefix, shipped as
package data; ``kibana_dashboards/`` in the repository holds the same file.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any

from audit_middleware.model.actions import CATALOG
from audit_middleware.model.event import BUILTIN_RESOURCE_TYPES
from audit_middleware.opensearch.dashboards import fields, objects, visualizations
from audit_middleware.opensearch.dashboards.objects import Panel, PhraseFilter
from audit_middleware.opensearch.dashboards.visualizations import Control, DateHistogram, Terms
from audit_middleware.opensearch.tiers import DEFAULT_PREFIX, validate_name

__all__ = ["BUNDLE_FILE", "DASHBOARD_TITLE", "bundled_ndjson", "ndjson", "saved_objects"]

BUNDLE_FILE = "audit-logs.ndjson"
DASHBOARD_TITLE = "Audit Logs"
TIME_FIELD = "@timestamp"
REFRESH_MS = 30_000
NEWEST_FIRST = ((TIME_FIELD, "desc"),)
# The resource types whose entries get a saved search of their own: the built-in ones
# (types an app registers at run time must not change the shipped file).
PER_TYPE_SEARCHES = tuple(BUILTIN_RESOURCE_TYPES)


def _field(name: str) -> str:
    """``name``, if the index template maps it; a saved object may name no other field."""
    if name not in fields.field_spec_names():
        raise ValueError(f"the index template maps no field {name!r}: saved objects cannot use it")
    return name


def _quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _is(name: str, *values: str) -> str:
    """Lucene: ``name`` holds one of ``values`` (exact keyword values, quoted)."""
    terms = [_quoted(v) for v in values]
    return f"{_field(name)}:{terms[0] if len(terms) == 1 else '(' + ' OR '.join(terms) + ')'}"


def _actions(*action_ids: str) -> str:
    """Lucene: the event is one of these catalog actions."""
    return _is("event.action", *(CATALOG.get(action_id).id for action_id in action_ids))


def _any(*clauses: str) -> str:
    return " OR ".join(f"({clause})" if " AND " in clause else clause for clause in clauses)


# The columns of Discover's table (the time column comes first by itself).
ENTRY_COLUMNS = (
    "user.email",
    "audit.action.label",
    "audit.resource.type",
    "audit.resource.name",
    "event.outcome",
    "source.ip",
)
LOGIN_COLUMNS = (
    "user.name",
    "user.email",
    "event.action",
    "event.outcome",
    "source.ip",
    "user_agent.original",
)
CHANGE_COLUMNS = (*ENTRY_COLUMNS[:4], "audit.changes.fields", "event.outcome", "source.ip")

FIELD_FORMATS: dict[str, dict[str, Any]] = {
    # Long user agents would widen every table; the document view still shows the whole value.
    "user_agent.original": {"id": "truncate", "params": {"fieldLength": 80}},
    # Who holds an address: RDAP, the registries' own lookup service (opened only on a click).
    "source.ip": {
        "id": "url",
        "params": {"type": "a", "urlTemplate": "https://rdap.org/ip/{{value}}", "labelTemplate": "{{value}}"},
    },
}


class _Names:
    """Ids and titles of one prefix's objects."""

    def __init__(self, prefix: str) -> None:
        self.prefix = validate_name(prefix, "prefix")
        self._suffix = "" if prefix == DEFAULT_PREFIX else f" [{prefix}]"

    def id(self, name: str) -> str:
        return objects.object_id(self.prefix, name)

    def title(self, text: str) -> str:
        return text + self._suffix


def _searches(names: _Names, pattern: str) -> list[dict[str, Any]]:
    def search(
        name: str,
        title: str,
        description: str,
        query: str,
        *,
        columns: Sequence[str] = ENTRY_COLUMNS,
        filters: Sequence[PhraseFilter] = (),
    ) -> dict[str, Any]:
        return objects.saved_search(
            names.id(f"search/{name}"),
            title=names.title(title),
            description=description,
            index_pattern_id=pattern,
            query=query,
            filters=[PhraseFilter(_field(f.field), f.value, f.negate) for f in filters],
            columns=[_field(column) for column in columns],
            sort=[(_field(field), direction) for field, direction in NEWEST_FIRST],
        )

    found = [
        search("all", "Audit: all entries", "Every audit entry, newest first.", ""),
        search(
            "failed-logins",
            "Audit: failed logins",
            "Login attempts that failed, with the name that was tried, the address and the browser.",
            _actions("login", "login_failed"),
            columns=LOGIN_COLUMNS,
            filters=[PhraseFilter("event.outcome", "failure")],
        ),
        search(
            "deletions",
            "Audit: deletions",
            "Everything deleted: resources, SSH keys, API tokens, members (ECS event.type deletion).",
            _is("event.type", "deletion"),
        ),
        search(
            "permission-changes",
            "Audit: permission changes",
            "Permissions changed, and any action an application declares as ECS iam/admin.",
            _any(
                _actions("permissions_changed"),
                f"{_is('event.category', 'iam')} AND {_is('event.type', 'admin')}",
            ),
            columns=CHANGE_COLUMNS,
        ),
        search(
            "token-events",
            "Audit: API token events",
            "API tokens created and revoked, and any other action on an API token.",
            _any(_actions("token_created", "token_revoked"), _is("audit.resource.type", "api_token")),
        ),
        search(
            "ssh-key-events",
            "Audit: SSH key events",
            "SSH keys added and deleted, and any other action on an SSH key.",
            _any(_actions("ssh_key_added", "ssh_key_deleted"), _is("audit.resource.type", "ssh_key")),
        ),
    ]
    found.extend(
        search(
            f"resource-type/{kind}",
            f"Audit: {BUILTIN_RESOURCE_TYPES[kind]} entries",
            f"Entries whose resource is a {BUILTIN_RESOURCE_TYPES[kind].lower()} "
            f"(audit.resource.type {kind}).",
            "",
            columns=CHANGE_COLUMNS,
            filters=[PhraseFilter("audit.resource.type", kind)],
        )
        for kind in PER_TYPE_SEARCHES
    )
    return found


def _visualizations(names: _Names, pattern: str, failed_logins: str) -> dict[str, dict[str, Any]]:
    def chart(
        name: str, title: str, description: str, kind: str, *buckets: Terms | DateHistogram, **source: str
    ) -> dict[str, Any]:
        checked = [
            Terms(_field(b.field), b.size, b.label)
            if isinstance(b, Terms)
            else DateHistogram(_field(b.field))
            for b in buckets
        ]
        if "saved_search_id" not in source:
            source["index_pattern_id"] = pattern
        return visualizations.visualization(
            names.id(f"visualization/{name}"),
            title=names.title(title),
            description=description,
            kind=kind,
            buckets=checked,
            **source,
        )

    controls = visualizations.input_controls(
        names.id("visualization/filters"),
        title=names.title("Audit: filters"),
        description="Action type, resource type, user and tenant; the time picker sets the date range.",
        index_pattern_id=pattern,
        controls=[
            Control(_field("audit.action.filter"), "Action type"),
            Control(_field("audit.resource.type"), "Resource type"),
            Control(_field("user.email"), "User"),
            Control(_field("organization.id"), "Tenant"),
        ],
    )
    return {
        "filters": controls,
        "over-time": chart(
            "events-over-time",
            "Audit: events over time by action group",
            "Entries per interval, stacked by action type "
            "(create, update, delete, start-stop, account, team).",
            "histogram",
            DateHistogram(TIME_FIELD),
            Terms("audit.action.filter", 10, "Action type"),
        ),
        "outcome": chart(
            "outcome",
            "Audit: outcome",
            "Success, failure and unknown outcomes.",
            "pie",
            Terms("event.outcome", 3, "Outcome"),
        ),
        "top-users": chart(
            "top-users",
            "Audit: top users",
            "The users with the most entries.",
            "table",
            Terms("user.email", 10, "User"),
        ),
        "top-resources": chart(
            "top-resources",
            "Audit: top resources",
            "The resources with the most entries, by type and name.",
            "table",
            Terms("audit.resource.type", 10, "Resource type"),
            Terms("audit.resource.name", 10, "Resource"),
        ),
        "failed-logins-by-ip": chart(
            "failed-logins-by-ip",
            "Audit: failed logins by source IP",
            "Addresses with the most failed logins (the saved search 'Audit: failed logins').",
            "horizontal_bar",
            Terms("source.ip", 10, "Source IP"),
            saved_search_id=failed_logins,
        ),
    }


def saved_objects(prefix: str = DEFAULT_PREFIX) -> list[dict[str, Any]]:
    """Every bundled saved object for the data streams ``{prefix}-*``, referenced ones first."""
    names = _Names(prefix)
    pattern_id = names.id("index-pattern")
    pattern = objects.index_pattern(
        pattern_id,
        title=f"{names.prefix}-*",
        time_field=_field(TIME_FIELD),
        fields=fields.index_pattern_fields(fields.template_field_caps()),
        field_formats={_field(name): value for name, value in FIELD_FORMATS.items()},
    )
    searches = _searches(names, pattern_id)
    visuals = _visualizations(names, pattern_id, failed_logins=searches[1]["id"])
    all_entries = searches[0]["id"]

    def panel(key: str, x: int, y: int, w: int, h: int) -> Panel:
        return Panel("visualization", visuals[key]["id"], x, y, w, h)

    board = objects.dashboard(
        names.id("dashboard"),
        title=names.title(DASHBOARD_TITLE),
        description="Who did what, when, from where: filter by action type, resource type, user and "
        "tenant; open an entry for its details. Export from Discover (Reporting, Generate CSV).",
        panels=[
            panel("filters", 0, 0, 48, 7),
            panel("over-time", 0, 7, 32, 13),
            panel("outcome", 32, 7, 16, 13),
            panel("top-users", 0, 20, 16, 14),
            panel("top-resources", 16, 20, 16, 14),
            panel("failed-logins-by-ip", 32, 20, 16, 14),
            Panel("search", all_entries, 0, 34, 48, 24),
        ],
        time_from="now-24h",
        refresh_ms=REFRESH_MS,
    )
    return [pattern, *searches, *visuals.values(), board]


def ndjson(prefix: str = DEFAULT_PREFIX) -> bytes:
    """The import file of ``saved_objects(prefix)``."""
    return objects.encode_ndjson(saved_objects(prefix))


def bundled_ndjson() -> bytes:
    """The file shipped in the package (``ndjson()`` of the default prefix when it was generated)."""
    return resources.files(__package__).joinpath(BUNDLE_FILE).read_bytes()
