"""The audit record: a typed model and its ECS-aligned OpenSearch document.

``AuditEvent`` is what the request path builds (cheaply); ``to_document()`` turns it into
the stored JSON shape and runs on the sink's side, off the request path.

This module is long because the parts of a record and its document, in both directions
(``to_document`` / ``from_document``), must change together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Literal, cast

from audit_middleware.errors import AuditValidationError
from audit_middleware.model.actions import CATALOG, Action
from audit_middleware.model.ecs import ECS_VERSION
from audit_middleware.model.ids import check_identifier
from audit_middleware.model.tenancy import NO_TENANT, scope_key
from audit_middleware.model.timestamps import format_timestamp, parse_timestamp

__all__ = [
    "ACTOR_KINDS",
    "DATASET",
    "NO_TENANT",
    "OUTCOMES",
    "PERMISSIONS_CHANGED",
    "RESOURCE_TYPES",
    "SYSTEM_ACTOR",
    "Actor",
    "ActorKind",
    "AuditEvent",
    "ChangeSet",
    "Outcome",
    "PermissionChange",
    "RequestFacts",
    "Resource",
    "Scope",
    "register_resource_type",
]

ActorKind = Literal["user", "api_token", "service", "system"]
Outcome = Literal["success", "failure", "unknown"]
ACTOR_KINDS: frozenset[str] = frozenset(("user", "api_token", "service", "system"))
OUTCOMES: frozenset[str] = frozenset(("success", "failure", "unknown"))
DATASET = "audit_middleware.audit"
PERMISSIONS_CHANGED = "permissions_changed"

# Built-in resource types and their labels; apps name any others they need.
RESOURCE_TYPES: dict[str, str] = {
    "pod": "Pod",
    "virtual_machine": "Virtual Machine",
    "storage": "Storage",
    "project": "Project",
    "ssh_key": "SSH Key",
    "api_token": "API Token",
    "member": "Member",
    "invite": "Invite",
    "session": "Session",
    "audit_log": "Audit Log",
}
BUILTIN_RESOURCE_TYPES: Mapping[str, str] = MappingProxyType(dict(RESOURCE_TYPES))
"""The built-in resource types alone (what the bundled dashboards know), whatever apps register."""


def register_resource_type(type_id: str, label: str) -> None:
    """Name an application resource type, so viewers can show its label."""
    _check_resource_type(type_id)
    RESOURCE_TYPES[type_id] = label


def _check_resource_type(type_id: object) -> str:
    return check_identifier(type_id, "resource type")


def _opt_str(value: object, what: str, limit: int = 1024) -> str | None:
    """Ids may come as ints or UUIDs; store text, bounded so one field cannot bloat a record."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        raise AuditValidationError(f"{what} must be text, not bytes")
    text = str(value)[:limit]
    if text.isascii():
        return text
    # OpenSearch counts a keyword's ignore_above in UTF-16 code units: keep what it indexes
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return text[:index]
    return text


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted. ``impersonator`` is the real person when someone acts as another.

    >>> Actor(id="42", email="ann@example.com", roles=("admin",))
    Actor(id='42', name=None, email='ann@example.com', roles=('admin',), kind='user', impersonator=None)
    """

    id: str | None = None
    name: str | None = None
    email: str | None = None
    roles: tuple[str, ...] = ()
    kind: ActorKind = "user"
    impersonator: Actor | None = None

    def __post_init__(self) -> None:
        if self.kind not in ACTOR_KINDS:
            raise AuditValidationError(f"actor kind {self.kind!r} must be one of {sorted(ACTOR_KINDS)}")
        for name in ("id", "name", "email"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, _opt_str(value, f"actor {name}"))
        roles: object = self.roles  # typed as a tuple, but callers pass lists (or, by mistake, a string)
        if not isinstance(roles, tuple):
            if isinstance(roles, str):
                raise AuditValidationError("actor roles must be a sequence of names, not one string")
            object.__setattr__(self, "roles", tuple(str(r) for r in cast(Iterable[object], roles)))
        impersonator: object = self.impersonator
        if impersonator is not None and not isinstance(impersonator, Actor):
            raise AuditValidationError("actor impersonator must be an Actor")


SYSTEM_ACTOR = Actor(id="system", name="system", kind="system")


@dataclass(frozen=True, slots=True)
class Resource:
    """What was acted on: a type (``"pod"``), and its id and human name when known."""

    type: str
    id: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        _check_resource_type(self.type)
        # typed as text, but apps pass ints and UUIDs
        for name in ("id", "name"):
            value: object = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, _opt_str(value, f"resource {name}"))


@dataclass(frozen=True, slots=True)
class Scope:
    """A tenant (organization) or a project: an id and an optional display name."""

    id: str
    name: str | None = None

    @classmethod
    def of(cls, value: Scope | str | int | None) -> Scope | None:
        """Accept a Scope, a bare id, or None."""
        if value is None or isinstance(value, Scope):
            return value
        return cls(id=str(value))


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """The change of an update: previous values, new values and the modified fields."""

    before: Mapping[str, Any]
    after: Mapping[str, Any]
    fields: tuple[str, ...]

    @property
    def is_empty(self) -> bool:
        """True when nothing changed."""
        return not self.fields


@dataclass(frozen=True, slots=True)
class PermissionChange:
    """The roles (or permissions) a Permissions Changed record granted and revoked.

    Stored as ``audit.permissions.added`` / ``.removed``, keyword arrays that alert
    rules read ("who was granted ``admin``?"). Duplicates are dropped, order is kept.

    >>> PermissionChange(added=["admin", "admin"], removed=("viewer",))
    PermissionChange(added=('admin',), removed=('viewer',))
    """

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("added", "removed"):
            object.__setattr__(self, name, _role_names(getattr(self, name), f"permissions {name}"))

    @property
    def is_empty(self) -> bool:
        """True when nothing was granted or revoked."""
        return not (self.added or self.removed)

    @classmethod
    def from_changes(cls, changes: ChangeSet | None, key: str = "roles") -> PermissionChange | None:
        """The roles granted and revoked by a change of the list under ``key``, or None.

        ``diff({"roles": ["viewer"]}, {"roles": ["viewer", "admin"]})`` grants ``admin``.
        A value that is not a list of names (absent counts as empty) gives None.
        """
        if changes is None or (key not in changes.before and key not in changes.after):
            return None
        before, after = changes.before.get(key, ()), changes.after.get(key, ())
        if not (_is_name_list(before) and _is_name_list(after)):
            return None
        old, new = [str(role) for role in before], [str(role) for role in after]
        change = cls(tuple(r for r in new if r not in old), tuple(r for r in old if r not in new))
        return None if change.is_empty else change


def _is_name_list(value: object) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(item, str | int) for item in value)


def _role_names(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise AuditValidationError(f"{what} must be a sequence of names, not {type(value).__name__}")
    names = []
    for item in cast(Iterable[object], value):
        name = _opt_str(item, what)
        if not name:
            raise AuditValidationError(f"{what} holds an empty name")
        names.append(name)
    return tuple(dict.fromkeys(names))


@dataclass(slots=True)  # not frozen: built on every audited request, and frozen init costs more
class RequestFacts:
    """What the HTTP request tells about an event; absent outside a request."""

    method: str | None = None
    path: str | None = None
    route: str | None = None
    request_id: str | None = None
    status_code: int | None = None
    client_ip: str | None = None
    forwarded_chain: tuple[str, ...] = ()
    user_agent: str | None = None
    trace_id: str | None = None
    span_id: str | None = None


@dataclass(slots=True)
class AuditEvent:
    """One audit record. Build it with ``audit_middleware.record()`` or the middleware."""

    id: str
    unix_ms: int
    action: Action
    actor: Actor
    outcome: Outcome = "success"
    resource: Resource | None = None
    targets: tuple[Resource, ...] = ()
    changes: ChangeSet | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    tenant: Scope | None = None
    project: Scope | None = None
    request: RequestFacts | None = None
    service: str | None = None
    permissions: PermissionChange | None = None
    """Roles granted and revoked; for Permissions Changed records without it, derived from ``changes``."""

    @property
    def target_count(self) -> int:
        """How many resources the operation acted on: its targets when it lists several, else 1.

        Stored as ``audit.target_count``, so "N deletions" counts a bulk delete of 50
        targets as 50.
        """
        return len(self.targets) or 1

    @property
    def permission_change(self) -> PermissionChange | None:
        """The roles this record granted and revoked (given, or derived from a ``roles`` change)."""
        if self.permissions is not None:
            return None if self.permissions.is_empty else self.permissions
        if self.action.id == PERMISSIONS_CHANGED:
            return PermissionChange.from_changes(self.changes)
        return None

    @property
    def timestamp(self) -> datetime:
        """When the event happened, in UTC."""
        return datetime.fromtimestamp(self.unix_ms / 1000, tz=timezone.utc)

    def to_document(self) -> dict[str, Any]:
        """The ECS-aligned document stored in OpenSearch (and SQLite, and JSON lines)."""
        action = self.action
        doc: dict[str, Any] = {
            "@timestamp": format_timestamp(self.unix_ms),
            "ecs": {"version": ECS_VERSION},
            "event": {
                "id": self.id,
                "kind": "event",
                "action": action.id,
                "category": list(action.category),
                "type": list(action.type),
                "outcome": self.outcome,
                "dataset": DATASET,
            },
        }
        audit: dict[str, Any] = {
            "actor": {"kind": self.actor.kind},
            "action": {"label": action.label, "group": action.group, "filter": action.filter_group},
            "target_count": self.target_count,
        }
        doc["user"] = _user_document(self.actor)
        if self.tenant is not None:
            # the stored key (model.tenancy); an id stored as a hash keeps its original, unindexed
            key = scope_key(self.tenant.id)
            doc["organization"] = _named(key, self.tenant.name)
            if key != self.tenant.id:
                audit["organization"] = {"original_id": self.tenant.id}
        if self.project is not None:
            key = scope_key(self.project.id)
            audit["project"] = _named(key, self.project.name)
            if key != self.project.id:
                audit["project"]["original_id"] = self.project.id
        if self.resource is not None:
            audit["resource"] = _resource_document(self.resource)
        if self.targets:
            audit["targets"] = [_resource_document(t) for t in self.targets]
        if self.changes is not None:
            audit["changes"] = {
                "before": dict(self.changes.before),
                "after": dict(self.changes.after),
                "fields": list(self.changes.fields),
            }
        if self.details:
            audit["details"] = dict(self.details)
        permissions = self.permission_change
        if permissions is not None:
            audit["permissions"] = {"added": list(permissions.added), "removed": list(permissions.removed)}
        if self.service:
            doc["service"] = {"name": self.service}
        if self.request is not None:
            _add_request(doc, audit, self.request)
        doc["audit"] = audit
        return doc

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> AuditEvent:
        """Rebuild an event from its stored document (the inverse of ``to_document``)."""
        event = doc["event"]
        audit = doc.get("audit", {})
        action_id = event["action"]
        action = CATALOG.get(action_id) if action_id in CATALOG else _unknown_action(event, audit)
        user = doc.get("user", {})
        actor = _actor_from_document(user, audit.get("actor", {}).get("kind", "user"))
        changes = audit.get("changes")
        http = doc.get("http", {})
        request = RequestFacts(
            method=http.get("request", {}).get("method"),
            path=doc.get("url", {}).get("path"),
            route=audit.get("http", {}).get("route"),
            request_id=http.get("request", {}).get("id"),
            status_code=http.get("response", {}).get("status_code"),
            client_ip=doc.get("source", {}).get("ip"),
            forwarded_chain=tuple(audit.get("source", {}).get("forwarded", ())),
            user_agent=doc.get("user_agent", {}).get("original"),
            trace_id=doc.get("trace", {}).get("id"),
            span_id=doc.get("span", {}).get("id"),
        )
        organization = doc.get("organization")
        project = audit.get("project")
        permissions = audit.get("permissions")
        return cls(
            id=event["id"],
            unix_ms=parse_timestamp(doc["@timestamp"]),
            action=action,
            actor=actor,
            outcome=event.get("outcome", "unknown"),
            resource=_resource_from(audit.get("resource")),
            targets=tuple(r for r in map(_resource_from, audit.get("targets", ())) if r is not None),
            changes=ChangeSet(
                changes.get("before", {}), changes.get("after", {}), tuple(changes.get("fields", ()))
            )
            if changes
            else None,
            details=audit.get("details", {}),
            tenant=_scope_from(organization, audit.get("organization")),
            project=_scope_from(project, project),
            request=request if (http or "url" in doc or "source" in doc or "trace" in doc) else None,
            service=doc.get("service", {}).get("name"),
            permissions=PermissionChange(
                tuple(permissions.get("added", ())), tuple(permissions.get("removed", ()))
            )
            if permissions
            else None,
        )


def _scope_from(stored: Mapping[str, Any] | None, originals: Mapping[str, Any] | None) -> Scope | None:
    """The scope as the app named it: the original id of a hashed key, else the stored id."""
    if not stored:
        return None
    original = (originals or {}).get("original_id")
    return Scope(original if isinstance(original, str) else stored["id"], stored.get("name"))


# The document's small objects leave out what is None; written out rather than filtered by a
# comprehension, which cost four times as much (a function call each on Python 3.11).


def _named(key: str, name: str | None) -> dict[str, Any]:
    return {"id": key} if name is None else {"id": key, "name": name}


def _identity(actor: Actor) -> dict[str, Any]:
    identity: dict[str, Any] = {}
    if actor.id is not None:
        identity["id"] = actor.id
    if actor.name is not None:
        identity["name"] = actor.name
    if actor.email is not None:
        identity["email"] = actor.email
    return identity


def _user_document(actor: Actor) -> dict[str, Any]:
    # ECS: user.* is who performed the action; with impersonation that is the real person,
    # and user.effective.* is the identity whose privileges were used.
    if actor.impersonator is None:
        user = _identity(actor)
        if actor.roles:
            user["roles"] = list(actor.roles)
        return user
    user = _identity(actor.impersonator)
    if actor.impersonator.roles:
        user["roles"] = list(actor.impersonator.roles)
    user["effective"] = _identity(actor)
    if actor.roles:
        user["effective"]["roles"] = list(actor.roles)
    return user


def _actor_from_document(user: Mapping[str, Any], kind: ActorKind) -> Actor:
    effective = user.get("effective")
    roles = tuple(user.get("roles", ()))
    real = Actor(id=user.get("id"), name=user.get("name"), email=user.get("email"), roles=roles)
    if not effective:
        return Actor(real.id, real.name, real.email, real.roles, kind)
    return Actor(
        effective.get("id"),
        effective.get("name"),
        effective.get("email"),
        tuple(effective.get("roles", ())),
        kind,
        impersonator=real,
    )


def _resource_document(resource: Resource) -> dict[str, Any]:
    document: dict[str, Any] = {"type": resource.type}
    if resource.id is not None:
        document["id"] = resource.id
    if resource.name is not None:
        document["name"] = resource.name
    return document


def _resource_from(value: Mapping[str, Any] | None) -> Resource | None:
    if not value:
        return None
    return Resource(value["type"], value.get("id"), value.get("name"))


def _unknown_action(event: Mapping[str, Any], audit: Mapping[str, Any]) -> Action:
    # A record written by another app version with an action this process never registered.
    label = audit.get("action", {}).get("label") or event["action"]
    return Action(
        event["action"],
        label,
        tuple(event.get("category", ("configuration",))),
        tuple(event.get("type", ("info",))),
        audit.get("action", {}).get("group", "custom"),
    )


def _add_request(doc: dict[str, Any], audit: dict[str, Any], request: RequestFacts) -> None:
    http_request: dict[str, Any] = {}
    if request.method is not None:
        http_request["method"] = request.method
    if request.request_id is not None:
        http_request["id"] = request.request_id
    http: dict[str, Any] = {}
    if http_request:
        http["request"] = http_request
    if request.status_code is not None:
        http["response"] = {"status_code": request.status_code}
    if http:
        doc["http"] = http
    if request.path is not None:
        doc["url"] = {"path": request.path}
    if request.client_ip is not None:
        doc["source"] = {"ip": request.client_ip}
    if request.user_agent is not None:
        doc["user_agent"] = {"original": request.user_agent}
    if request.trace_id is not None:
        doc["trace"] = {"id": request.trace_id}
    if request.span_id is not None:
        doc["span"] = {"id": request.span_id}
    if request.forwarded_chain:
        audit["source"] = {"forwarded": list(request.forwarded_chain)}
    if request.route is not None:
        audit["http"] = {"route": request.route}
