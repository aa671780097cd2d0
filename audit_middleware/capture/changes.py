"""Changes of registered models: the part of ORM capture that knows no ORM.

The ORM adapters (``frameworks.django``, ``frameworks.sqlalchemy``) read rows and hand
over what they saw; this module holds what they share:

* the registry of audited models and how each is audited (:class:`Tracking`);
* (in ``capture.snapshots``) :func:`plain`, the snapshot of a value taken on the thread
  that wrote the row, so that nothing later (a background worker included) ever reads an
  ORM object or session;
* :class:`RowChange` (one row created, updated or deleted, with its before/after values)
  and :class:`ChangeGroup` (the rows of one ORM operation: a save, a delete with its
  cascade, one bulk statement), built only from plain snapshots;
* :class:`ChangeLog`, a request's committed changes merged per row, which the recorder
  turns into the request's record (``capture.recorder``, where the precedence lives);
* settle hooks: an adapter whose commits it cannot observe directly (Django's test
  transactions) settles its pending changes before a request's record is built.

Excluded fields are never read into a snapshot, so they never leave the process.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from audit_middleware.errors import AuditValidationError
from audit_middleware.model.changes import diff, join_path
from audit_middleware.model.event import RESOURCE_TYPES, ChangeSet, Resource, register_resource_type
from audit_middleware.model.ids import check_identifier

__all__ = [
    "REGISTRY",
    "ChangeGroup",
    "ChangeKind",
    "ChangeLog",
    "ChangeRegistry",
    "RowChange",
    "Tracking",
    "add_settle_hook",
    "decorator",
    "default_resource_type",
    "name_of",
    "row_change",
    "settle",
    "target_key",
    "tracking",
]

ChangeKind = Literal["create", "update", "delete"]

NAME_FIELDS = ("name", "title", "username", "email", "slug", "label")
"""Fields tried, in order, for a row's human name when ``name_field`` is not given."""

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_IDENTIFIER = re.compile(r"[^a-z0-9_]+")

NameField = str | Callable[[Any], object]


@dataclass(frozen=True, slots=True)
class Tracking:
    """How one registered model is audited.

    ``fields`` (when given) is the only fields read; ``exclude`` is never read, so its
    values never leave the process. ``name_field`` names the field holding the row's
    human name, or is a callable ``row -> name``; without it the first of
    :data:`NAME_FIELDS` the model has is used.
    """

    resource_type: str
    fields: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()
    name_field: NameField | None = None

    def tracks(self, name: str) -> bool:
        """Whether values of the field ``name`` are captured."""
        return name not in self.exclude and (self.fields is None or name in self.fields)


def tracking(
    model: type,
    *,
    fields: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    resource_type: str | None = None,
    name_field: NameField | None = None,
    label: str | None = None,
) -> Tracking:
    """Check a registration's options and build its :class:`Tracking` (adapters call this).

    The resource type defaults to the class name in snake case (``BookInstance`` is
    ``book_instance``); ``label`` (default: the class name in words) names it for viewers.
    """
    for option, value in (("fields", fields), ("exclude", exclude)):
        if isinstance(value, str):
            raise AuditValidationError(f"{option} takes a list of field names, not one string: [{value!r}]")
    type_id = check_identifier(resource_type or default_resource_type(model.__name__), "resource type")
    if type_id not in RESOURCE_TYPES:
        register_resource_type(type_id, label or type_id.replace("_", " ").title())
    if name_field is not None and not (isinstance(name_field, str) or callable(name_field)):
        raise AuditValidationError("name_field must be a field name or a callable")
    return Tracking(
        resource_type=type_id,
        fields=None if fields is None else frozenset(fields),
        exclude=frozenset(exclude),
        name_field=name_field,
    )


def decorator(register: Callable[..., type], model: type | None, options: Mapping[str, Any]) -> Any:
    """What an adapter's ``@audited`` returns: the class registered (bare use), or a decorator."""
    if model is not None:
        return register(model)
    return lambda cls: register(cls, **options)


def default_resource_type(class_name: str) -> str:
    """A class name as a resource type: ``BookInstance`` -> ``book_instance``.

    >>> default_resource_type("HTTPSProxy"), default_resource_type("Post")
    ('https_proxy', 'post')
    """
    snake = _NOT_IDENTIFIER.sub("_", _CAMEL.sub("_", class_name).lower()).strip("_")
    return snake if snake and snake[0].isalpha() else f"model_{snake}"


class ChangeRegistry:
    """The models whose changes are audited, each with its :class:`Tracking`.

    A model's own registration wins; otherwise the nearest registered base class (in
    method resolution order) applies, so registering a base covers its subclasses.
    Registrations happen at start-up; lookups (on every write) are lock-free.
    """

    __slots__ = ("_lock", "_lookups", "_models", "active")

    def __init__(self) -> None:
        self._models: dict[type, Tracking] = {}
        self._lookups: dict[type, Tracking | None] = {}
        self._lock = threading.Lock()
        self.active = False
        """Whether any model is registered (ORM capture is on); read on every request."""

    def add(self, model: type, options: Tracking) -> Tracking:
        """Register ``model``; registering it again replaces its options."""
        with self._lock:
            self._models = {**self._models, model: options}
            self._lookups = {}
            self.active = True
        return options

    def tracking_for(self, model: type) -> Tracking | None:
        """How ``model`` is audited, or None when it is not registered."""
        try:
            return self._lookups[model]
        except KeyError:
            pass
        models = self._models
        found = next((models[base] for base in model.__mro__ if base in models), None)
        self._lookups[model] = found
        return found

    def models(self) -> tuple[type, ...]:
        """The registered models."""
        return tuple(self._models)

    def snapshot(self) -> dict[type, Tracking]:
        """The registrations as they are now (for :meth:`restore`)."""
        return dict(self._models)

    def restore(self, registrations: Mapping[type, Tracking]) -> None:
        """Put back registrations taken with :meth:`snapshot` (tests use this)."""
        with self._lock:
            self._models = dict(registrations)
            self._lookups = {}
            self.active = bool(self._models)

    def clear(self) -> None:
        """Forget every registration."""
        self.restore({})


REGISTRY = ChangeRegistry()
"""The process-wide registry the ORM adapters read."""


def name_of(options: Tracking, values: Mapping[str, Any], row: Any) -> str | None:
    """The human name of a row: its ``name_field`` (a field or a callable), else a common name field.

    ``values`` is the row's snapshot; a callable ``name_field`` is called with ``row``
    (the ORM object, on the writing thread; rows of a bulk statement have none).
    """
    chosen = options.name_field
    if callable(chosen):
        if row is None:
            return None
        try:
            name = chosen(row)
        except Exception:  # noqa: BLE001 - a broken name callback costs the name, not the record
            return None
        return None if name is None else str(name)
    for candidate in (chosen,) if chosen else NAME_FIELDS:
        value = values.get(candidate)
        if value is not None and value != "":
            return str(value)
    return None


@dataclass(slots=True)
class RowChange:
    """One row created, updated or deleted: its resource and the change of its tracked fields.

    ``before``/``after`` hold only what changed (for a create, every value; for a
    delete, every value it had); ``fields`` the dotted paths of the changed fields, as
    :func:`audit_middleware.diff` writes them.
    """

    kind: ChangeKind
    resource: Resource
    before: dict[str, Any]
    after: dict[str, Any]
    fields: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str | None]:
        """The row's identity: resource type and id."""
        return self.resource.type, self.resource.id

    def change_set(self) -> ChangeSet:
        """The change as an ``audit.changes`` value."""
        return ChangeSet(self.before, self.after, self.fields)


def row_change(
    kind: ChangeKind,
    resource: Resource,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> RowChange | None:
    """The change between two plain snapshots; None for an update that changed nothing tracked."""
    changes = diff(before, after)
    if kind == "update" and changes.is_empty:
        return None
    return RowChange(kind, resource, dict(changes.before), dict(changes.after), changes.fields)


@dataclass(slots=True)
class ChangeGroup:
    """The rows of one ORM operation.

    ``primary`` is the row the operation was about when the adapter knows it (the
    object a cascade delete started from); ``count`` the rows a bulk statement touched,
    when more than were captured.
    """

    rows: list[RowChange]
    primary: RowChange | None = None
    count: int | None = None

    @property
    def total(self) -> int:
        """Rows the operation touched."""
        return max(self.count or 0, len(self.rows))


@dataclass(slots=True)
class ChangeLog:
    """A request's committed changes, merged per row (a create then an update is one create)."""

    _rows: dict[tuple[str, str | None], RowChange] = field(default_factory=dict)
    extra: int = 0

    def add(self, group: ChangeGroup) -> None:
        """Fold the rows of a committed operation in."""
        self.extra += group.total - len(group.rows)
        for row in group.rows:
            key = row.key
            earlier = self._rows.get(key)
            merged = row if earlier is None else _merge(earlier, row)
            if merged is None:
                del self._rows[key]
            else:
                self._rows[key] = merged

    def rows(self) -> list[RowChange]:
        """The rows, in the order they were first changed."""
        return list(self._rows.values())

    @property
    def total(self) -> int:
        """Rows changed, including those a bulk statement touched beyond the captured ones."""
        return len(self._rows) + self.extra

    def __bool__(self) -> bool:
        return bool(self._rows) or self.extra > 0


def _merge(earlier: RowChange, later: RowChange) -> RowChange | None:
    """One row changed twice in a request: the net change (None when nothing is left of it)."""
    if later.kind == "delete":
        before = dict(later.before)
        if earlier.kind == "update":
            before.update(earlier.before)  # the values it had before this request changed them
        elif earlier.kind == "create":
            before = {**earlier.after, **later.before}
        return row_change("delete", later.resource, before, None)
    if earlier.kind == "create":
        return row_change("create", later.resource, None, {**earlier.after, **later.after})
    if earlier.kind == "delete":  # deleted, then a row with the same id written again
        return row_change("update", later.resource, earlier.before, later.after)
    if later.kind == "create":
        return later
    before = {**later.before, **earlier.before}
    after = {**earlier.after, **later.after}
    return row_change("update", later.resource, before, after)


def target_key(resource: Resource) -> str:
    """The key of a row in a change of several rows: ``type:id``."""
    return join_path([f"{resource.type}:{resource.id}"])


_settle_hooks: list[Callable[[], None]] = []


def add_settle_hook(hook: Callable[[], None]) -> None:
    """Run ``hook`` before a request's record is built (once per hook, however often added)."""
    if hook not in _settle_hooks:
        _settle_hooks.append(hook)


def settle() -> None:
    """Let the adapters hand over changes whose commit they could not observe directly."""
    for hook in _settle_hooks:
        hook()
