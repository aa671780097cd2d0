"""How entries look on the page: Jinja2 templates (autoescaped) and the values they show.

Templates live in ``templates/``; assets in ``static/`` are served by the viewer itself
with a content hash in their URL, so the page runs under a strict Content-Security-Policy
(no inline script or style) and a new release is never served a stale script.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from audit_middleware.errors import MissingDependencyError
from audit_middleware.model.actions import CATALOG, FILTER_GROUPS
from audit_middleware.model.changes import ABSENT, value_at
from audit_middleware.model.encoding import dumps
from audit_middleware.model.event import RESOURCE_TYPES, AuditEvent, Scope
from audit_middleware.model.timestamps import format_timestamp, from_unix_ms
from audit_middleware.query.export import display_user

try:
    import jinja2
except ImportError as exc:  # the one clear message the viewer's users need
    raise MissingDependencyError(
        "audit_middleware.viewer needs Jinja2, which is not installed: "
        "pip install opensearch-audit-middleware[viewer]"
    ) from exc

__all__ = ["ASSETS", "DiffRow", "EntryView", "action_choices", "asset_url", "render", "resource_choices"]

ASSETS: dict[str, str] = {
    "viewer.js": "text/javascript; charset=utf-8",
    "viewer.css": "text/css; charset=utf-8",
}
_SUMMARY_FIELDS = 3
_GROUP_TITLES = {"resource": "Resources", "account": "Account", "team": "Team", "audit": "Reads of this log"}
_GROUP_ORDER = {"resource": 0, "account": 1, "team": 2, "audit": 9}  # an app's own groups come before reads
_PRIMARY = (("create", "Create"), ("update", "Update"), ("delete", "Delete"), ("start-stop", "Start / Stop"))


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("audit_middleware.viewer", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **context: Any) -> bytes:
    """A template rendered with ``context``, as UTF-8."""
    return _environment().get_template(template).render(**context).encode("utf-8")


@lru_cache(maxsize=len(ASSETS))
def asset(name: str) -> bytes:
    """The bytes of a static asset."""
    return resources.files("audit_middleware.viewer").joinpath("static").joinpath(name).read_bytes()


def asset_url(base: str, name: str) -> str:
    """The URL of an asset, versioned by its content."""
    version = hashlib.sha256(asset(name)).hexdigest()[:12]
    return f"{base}/static/{name}?v={version}"


def action_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    """The action filter's options: the product's groups first, then every action by group."""
    grouped: dict[str, list[tuple[str, str]]] = {}
    in_groups = {action for ids in FILTER_GROUPS.values() for action in ids}
    for action in CATALOG:
        if action.id in in_groups:
            continue
        grouped.setdefault(action.group, []).append((action.id, action.label))
    choices: list[tuple[str, list[tuple[str, str]]]] = [("", list(_PRIMARY))]
    for group in sorted(grouped, key=lambda name: (_GROUP_ORDER.get(name, 5), name)):
        title = _GROUP_TITLES.get(group, group.replace("_", " ").capitalize())
        choices.append((title, grouped[group]))
    return choices


def resource_choices(extra: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """The resource type filter's options: the built-in and registered types, and ``extra``."""
    types = {**RESOURCE_TYPES, **(extra or {})}
    return sorted(types.items(), key=lambda item: item[1].lower())


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return dumps(value).decode("utf-8")


def _scope_text(scope: Scope | None) -> str:
    if scope is None:
        return ""
    return f"{scope.name} ({scope.id})" if scope.name else scope.id


@dataclass(frozen=True, slots=True)
class DiffRow:
    """One modified field: its previous and new value as text (None: absent on that side)."""

    field: str
    before: str | None
    after: str | None


class EntryView:
    """One event as the page shows it, with times in ``zone``."""

    __slots__ = ("event", "zone")

    def __init__(self, event: AuditEvent, zone: str) -> None:
        self.event = event
        self.zone = zone

    @property
    def id(self) -> str:
        """The event id."""
        return self.event.id

    @property
    def key(self) -> str:
        """The sort key (newest first), for the live view to place new rows."""
        return f"{self.event.unix_ms:015d}:{self.event.id}"

    @property
    def utc(self) -> str:
        """Exact UTC time, ISO 8601 with milliseconds."""
        return format_timestamp(self.event.unix_ms)

    def time(self, *, seconds: bool = True) -> str:
        """The time in the view's zone, as people read it."""
        moment = from_unix_ms(self.event.unix_ms)
        if self.zone != "UTC":
            moment = moment.astimezone(ZoneInfo(self.zone))
        return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")

    @property
    def local_exact(self) -> str:
        """The exact time in the view's zone with milliseconds and offset (details)."""
        moment = from_unix_ms(self.event.unix_ms).astimezone(ZoneInfo(self.zone))
        return f"{moment:%Y-%m-%d %H:%M:%S}.{self.event.unix_ms % 1000:03d} {moment:%Z (UTC%z)}"

    @property
    def user(self) -> str:
        """Who acted (``real (as other)`` when impersonating)."""
        return display_user(self.event.actor) or "unknown"

    @property
    def action(self) -> str:
        """The action's label."""
        return self.event.action.label

    @property
    def failed(self) -> bool:
        """Whether the action failed."""
        return self.event.outcome == "failure"

    @property
    def resource_type(self) -> str:
        """The resource type's label."""
        resource = self.event.resource
        if resource is None:
            return ""
        return RESOURCE_TYPES.get(resource.type, resource.type.replace("_", " ").capitalize())

    @property
    def resource(self) -> str:
        """The resource's name (or id)."""
        resource = self.event.resource
        return "" if resource is None else resource.name or resource.id or ""

    @property
    def project(self) -> str:
        """The project, as text."""
        return _scope_text(self.event.project)

    @property
    def tenant(self) -> str:
        """The tenant, as text."""
        return _scope_text(self.event.tenant)

    @property
    def summary(self) -> str:
        """The Details column: what changed, why it failed, or the first details."""
        changes = self.event.changes
        if changes is not None and changes.fields:
            shown = ", ".join(changes.fields[:_SUMMARY_FIELDS])
            more = len(changes.fields) - _SUMMARY_FIELDS
            return f"Changed {shown}" + (f" and {more} more" if more > 0 else "")
        details = self.event.details
        if details:
            parts = [f"{key}: {_value_text(value)}" for key, value in list(details.items())[:2]]
            return "; ".join(parts)[:160]
        return ""

    @property
    def diff(self) -> list[DiffRow]:
        """The modified fields with their previous and new values."""
        changes = self.event.changes
        if changes is None:
            return []
        rows = []
        for field in changes.fields or sorted({*changes.before, *changes.after}):
            before, after = value_at(changes.before, field), value_at(changes.after, field)
            rows.append(
                DiffRow(
                    field,
                    None if before is ABSENT else _value_text(before),
                    None if after is ABSENT else _value_text(after),
                )
            )
        return rows

    @property
    def details(self) -> list[tuple[str, str]]:
        """Free details of the event, as text pairs."""
        return [(str(key), _value_text(value)) for key, value in self.event.details.items()]

    @property
    def facts(self) -> list[tuple[str, str]]:
        """The request and actor facts of the detail view, each (label, text), empty ones left out."""
        event, request = self.event, self.event.request
        performer = event.actor.impersonator or event.actor
        resource = event.resource
        pairs = [
            ("User", self.user),
            ("User id", performer.id or ""),
            ("Acting as", display_user(event.actor) if event.actor.impersonator else ""),
            ("Roles", ", ".join(event.actor.roles)),
            ("Actor kind", event.actor.kind.replace("_", " ")),
            ("IP address", (request.client_ip or "") if request else ""),
            ("User agent", (request.user_agent or "") if request else ""),
            ("Action", f"{event.action.label} ({event.action.id})"),
            ("Outcome", event.outcome),
            ("Resource type", self.resource_type),
            ("Resource id", (resource.id or "") if resource else ""),
            ("Resource name", (resource.name or "") if resource else ""),
            ("Project", self.project),
            ("Organization", self.tenant),
            ("Request", _request_text(event)),
            ("Request id", (request.request_id or "") if request else ""),
            ("Event id", event.id),
        ]
        return [(label, value) for label, value in pairs if value]


def _request_text(event: AuditEvent) -> str:
    request = event.request
    if request is None:
        return ""
    status = f" → {request.status_code}" if request.status_code is not None else ""
    return f"{request.method or ''} {request.path or ''}{status}".strip()
