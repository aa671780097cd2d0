"""Django: every create, update and delete of a registered model, and its many-to-many
changes, from model signals.

    from audit_middleware.frameworks.django import register
    register(Post, exclude=["body"], name_field="title")

or the ``AuditedModel`` mixin, the ``@audited`` decorator, or
``AUDIT_MIDDLEWARE = {"models": {"blog.Post": {"exclude": ["body"]}}}`` in settings.

The cost model: an update reads the row as it was with one ``SELECT`` by primary key
of just the tracked fields (``pre_save``; the values held by the instance may be stale
or never loaded); creates and deletes read nothing, and many-to-many changes read the
related keys once. Receivers are connected per registered model (``sender=Model``), so
Django's fast deletes of other models are untouched.

Commits: a change made outside any transaction is committed when the signal fires; one
made inside ``atomic`` is handed on by ``transaction.on_commit`` and dropped with a
rollback. Django's ``TestCase`` wraps each test in transactions that never commit: its
own blocks count as committed (as its ``durable`` check does), and a change made in a
block the app opened inside them is handed on once that block has ended, without a
rollback, when the request's record is built or the next change is written.

Not captured (Django sends no signal): ``QuerySet.update()``, ``bulk_create()``,
``bulk_update()`` and raw SQL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, TypeVar

from django.db import connections, transaction
from django.db.models import Model
from django.db.models.signals import class_prepared, m2m_changed, post_delete, post_save, pre_save

from audit_middleware.capture.changes import (
    REGISTRY,
    ChangeGroup,
    NameField,
    RowChange,
    Tracking,
    add_settle_hook,
    decorator,
    name_of,
    row_change,
    tracking,
)
from audit_middleware.capture.snapshots import plain
from audit_middleware.capture.staging import StagedChanges, commit, stage
from audit_middleware.logs import warn
from audit_middleware.model.event import Resource

__all__ = ["AuditedModel", "audited", "register", "register_from_settings", "settle"]

ModelT = TypeVar("ModelT", bound=type[Model])

_BEFORE = "_audit_middleware_before"  # instance.__dict__: the row as it was, between pre_ and post_save
_DEFERRED: Any = object()


def register(
    model: ModelT,
    *,
    fields: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    resource_type: str | None = None,
    name_field: NameField | None = None,
) -> ModelT:
    """Audit the creates, updates, deletes and many-to-many changes of a Django model.

    ``fields`` limits the fields read, ``exclude`` names fields never read (their values
    never leave the process); field names as in the model (``author``, not
    ``author_id``). ``resource_type`` defaults to the class name in snake case;
    ``name_field`` names the field (or a callable ``instance -> name``) that is the
    row's human name. Returns the model, so it also works as a plain decorator.

    >>> from django.contrib.auth.models import Group  # doctest: +SKIP
    >>> register(Group, name_field="name")  # doctest: +SKIP
    <class 'django.contrib.auth.models.Group'>
    """
    options = tracking(
        model,
        fields=fields,
        exclude=exclude,
        resource_type=resource_type,
        name_field=name_field,
        label=str(model._meta.verbose_name).title(),
    )
    REGISTRY.add(model, options)
    uid = f"audit_middleware:{model._meta.label}"
    pre_save.connect(_pre_save, sender=model, dispatch_uid=uid)
    post_save.connect(_post_save, sender=model, dispatch_uid=uid)
    post_delete.connect(_post_delete, sender=model, dispatch_uid=uid)
    m2m_changed.connect(_m2m_changed, dispatch_uid="audit_middleware:m2m")
    add_settle_hook(settle)
    return model


def audited(model: Any = None, /, **options: Any) -> Any:
    """Class decorator form of :func:`register`: ``@audited`` or ``@audited(exclude=[...])``."""
    return decorator(register, model, options)


class AuditedModel:
    """Mixin form of :func:`register`: concrete models using it are registered when Django
    prepares them, with ``__audit__`` as options.

    >>> class Post(AuditedModel, models.Model):  # doctest: +SKIP
    ...     __audit__ = {"exclude": ["body"], "name_field": "title"}
    """

    __audit__: ClassVar[Mapping[str, Any]] = {}


def _on_class_prepared(sender: Any, **_kwargs: Any) -> None:
    if isinstance(sender, type) and issubclass(sender, AuditedModel) and not sender._meta.abstract:  # type: ignore[attr-defined]
        register(sender, **sender.__audit__)


class_prepared.connect(_on_class_prepared, dispatch_uid="audit_middleware:audited_model")


def register_from_settings(models: Mapping[str, Mapping[str, Any]] | Iterable[str]) -> None:
    """Register ``AUDIT_MIDDLEWARE["models"]``: ``{"app.Model": {options}}`` or a list of labels."""
    from django.apps import apps  # noqa: PLC0415 - the app registry is ready only at start-up

    items: Iterable[tuple[str, Mapping[str, Any]]] = (
        models.items() if isinstance(models, Mapping) else ((label, {}) for label in models)
    )
    for label, options in items:
        register(apps.get_model(label), **options)


def _snapshot(instance: Model, options: Tracking, only: Iterable[str] | None = None) -> dict[str, Any]:
    """The tracked field values the instance holds (deferred ones are not loaded)."""
    wanted = None if only is None else frozenset(only)
    values: dict[str, Any] = {}
    held = instance.__dict__
    for field in instance._meta.concrete_fields:
        name = field.name
        if not options.tracks(name) or (
            wanted is not None and name not in wanted and field.attname not in wanted
        ):
            continue
        value = held.get(field.attname, _DEFERRED)
        if value is not _DEFERRED:
            values[name] = plain(value)
    return values


def _resource(instance: Model, options: Tracking, values: Mapping[str, Any], pk: Any = _DEFERRED) -> Resource:
    key = instance.pk if pk is _DEFERRED else pk
    return Resource(
        options.resource_type, None if key is None else str(key), name_of(options, values, instance)
    )


def _guard(receiver: Callable[..., None]) -> Callable[..., None]:
    """A receiver's bug must never break the app's save or delete."""

    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            receiver(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            warn("audit capture of Django changes failed", error=f"{type(exc).__name__}: {exc}")

    guarded.__name__ = receiver.__name__
    return guarded


@_guard
def _pre_save(sender: type[Model], instance: Model, using: str, update_fields: Any = None, **_: Any) -> None:
    options = REGISTRY.tracking_for(sender)
    if options is None or instance.pk is None:
        return
    meta = instance._meta
    if instance._state.adding and meta.pk is not None and meta.pk.has_default():
        return  # Django will INSERT: a new row with a generated key has no previous values
    fields = [
        f
        for f in meta.concrete_fields
        if options.tracks(f.name)
        and (update_fields is None or f.name in update_fields or f.attname in update_fields)
    ]
    if not fields:
        return
    row = (
        sender._base_manager.using(using).filter(pk=instance.pk).values(*(f.attname for f in fields)).first()
    )
    instance.__dict__[_BEFORE] = None if row is None else {f.name: plain(row[f.attname]) for f in fields}


@_guard
def _post_save(
    sender: type[Model], instance: Model, created: bool, using: str, update_fields: Any = None, **_: Any
) -> None:
    before = instance.__dict__.pop(_BEFORE, None)
    options = REGISTRY.tracking_for(sender)
    if options is None:
        return
    after = _snapshot(instance, options, update_fields)
    if created or before is None:
        row = row_change("create", _resource(instance, options, after), None, after)
    else:
        current = _snapshot(instance, options)
        row = row_change("update", _resource(instance, options, current), before, after)
    if row is not None:
        _stage_on(using, stage(ChangeGroup([row])))


_local = threading.local()  # per thread, as Django's connections are


@_guard
def _post_delete(sender: type[Model], instance: Model, using: str, origin: Any = None, **_: Any) -> None:
    options = REGISTRY.tracking_for(sender)
    if options is None:
        return
    before = _snapshot(instance, options)
    row = row_change("delete", _resource(instance, options, before), before, None)
    if row is None:
        return
    # One delete() is one operation: the rows its cascade removes join the first one's group
    # while that group waits for the delete's transaction.
    batch: tuple[Any, StagedChanges, _OnCommit | None] | None = getattr(_local, "delete_batch", None)
    if (
        origin is not None
        and batch is not None
        and batch[0] is origin
        and batch[2] is not None
        and not batch[2].done
    ):
        staged = batch[1]
        staged.group.rows.append(row)
    else:
        staged = stage(ChangeGroup([row]))
        _local.delete_batch = (origin, staged, _stage_on(using, staged))
    if origin is instance:
        staged.group.primary = row


@_guard
def _m2m_changed(
    *,
    sender: type[Model],
    instance: Model,
    action: str,
    reverse: bool,
    model: type[Model],
    pk_set: set[Any] | None,
    using: str,
    **_: Any,
) -> None:
    if not REGISTRY.active or action not in ("pre_clear", "post_add", "post_remove", "post_clear"):
        return
    owner = model if reverse else type(instance)
    options = REGISTRY.tracking_for(owner)
    field = (
        None
        if options is None
        else next((f for f in owner._meta.many_to_many if f.remote_field.through is sender), None)
    )
    if options is None or field is None or not options.tracks(field.name):
        return
    # columns of the through table: the one pointing at the field's model, and at the related one
    source, target = field.m2m_column_name(), field.m2m_reverse_name()
    through = sender._base_manager.using(using)
    saved = f"{_BEFORE}:{field.name}"
    if action == "pre_clear":  # the keys a clear removes, read before they are gone
        mine, theirs = (target, source) if reverse else (source, target)
        instance.__dict__[saved] = set(through.filter(**{mine: instance.pk}).values_list(theirs, flat=True))
        return
    changed = instance.__dict__.pop(saved, set()) if action == "post_clear" else set(pk_set or ())
    added = action == "post_add"
    rows: list[RowChange] = []
    if reverse:  # instance is on the related side: each owner in ``changed`` gained or lost it
        current: dict[Any, set[Any]] = {pk: set() for pk in changed}
        for owner_pk, target_pk in through.filter(**{f"{source}__in": changed}).values_list(source, target):
            current[owner_pk].add(target_pk)
        for owner_pk, after in current.items():
            before = after - {instance.pk} if added else after | {instance.pk}
            rows.extend(_m2m_rows(options, field.name, owner_pk, None, before=before, after=after))
    else:
        after = set(through.filter(**{source: instance.pk}).values_list(target, flat=True))
        before = after - changed if added else after | changed
        rows.extend(_m2m_rows(options, field.name, instance.pk, instance, before=before, after=after))
    if rows:
        _stage_on(using, stage(ChangeGroup(rows)))


def _m2m_rows(
    options: Tracking, name: str, pk: Any, instance: Model | None, *, before: set[Any], after: set[Any]
) -> list[RowChange]:
    values = {} if instance is None else _snapshot(instance, options)
    resource = Resource(options.resource_type, str(pk), name_of(options, values, instance))
    row = row_change(
        "update", resource, {name: plain(sorted(before, key=str))}, {name: plain(sorted(after, key=str))}
    )
    return [] if row is None else [row]


class _OnCommit:
    """Hands staged changes on once: from ``on_commit``, or from :func:`settle` in a test case."""

    __slots__ = ("done", "staged")

    def __init__(self, staged: StagedChanges) -> None:
        self.staged = staged
        self.done = False

    def __call__(self) -> None:
        if not self.done:
            self.done = True
            commit(self.staged)


def _stage_on(using: str, staged: StagedChanges) -> _OnCommit | None:
    """Hand the changes on when the app's transaction commits, or now (then None); a rollback drops them."""
    settle()  # earlier changes first, in order
    connection = connections[using]
    if not connection.in_atomic_block or _test_blocks_only(connection):
        commit(staged)
        return None
    handover = _OnCommit(staged)
    transaction.on_commit(handover, using=using)
    if any(getattr(block, "_from_testcase", False) for block in connection.atomic_blocks):
        _waiting().append((connection, handover))
    return handover


def _test_blocks_only(connection: Any) -> bool:
    """Whether every open atomic block is one of Django's TestCase (whose commit never comes)."""
    return all(getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


def _waiting() -> list[tuple[Any, _OnCommit]]:
    waiting: list[tuple[Any, _OnCommit]] | None = getattr(_local, "waiting", None)
    if waiting is None:
        waiting = _local.waiting = []
    return waiting


def settle() -> None:
    """Hand on changes waiting inside a TestCase once the app's own block ended without a rollback.

    A change whose block was rolled back has had its ``on_commit`` callback removed by
    Django; one whose block is still open keeps waiting.
    """
    waiting: list[tuple[Any, _OnCommit]] | None = getattr(_local, "waiting", None)
    if not waiting:
        return
    keep = []
    for connection, handover in waiting:
        if handover.done:
            continue
        queued = any(func is handover for _sids, func, _robust in connection.run_on_commit)
        if not queued:
            continue  # rolled back: Django removed the callback
        if connection.needs_rollback or not _test_blocks_only(connection):
            keep.append((connection, handover))
            continue
        handover()
    _local.waiting = keep
