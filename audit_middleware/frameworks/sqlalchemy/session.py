"""The session events that see a flush's rows, and the transactions that decide their fate.

See the package docstring for what is read when, and what it costs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.orm import MANYTOONE, ColumnProperty, Mapper, Session, SessionTransaction

from audit_middleware import logs
from audit_middleware.capture.changes import (
    REGISTRY,
    ChangeGroup,
    ChangeKind,
    RowChange,
    Tracking,
    name_of,
    row_change,
)
from audit_middleware.capture.snapshots import plain
from audit_middleware.capture.staging import StagedChanges, commit, stage
from audit_middleware.model.event import Resource

__all__ = [
    "MappedModel",
    "after_commit",
    "after_flush",
    "after_transaction_end",
    "before_flush",
    "guard",
    "model_of",
    "stage_on",
]

_PENDING = "audit_middleware.pending"  # session.info: transaction -> staged changes
_COMMITTED = "audit_middleware.committed"  # session.info: transactions whose commit ran
_BEFORE = "audit_middleware.before"  # session.info: state -> values read before the flush


@dataclass(frozen=True, slots=True)
class MappedModel:
    """What the listeners need of one registered mapper, computed once."""

    options: Tracking
    mapper: Mapper[Any]
    columns: tuple[ColumnProperty[Any], ...]  # the tracked column attributes
    primary_key: tuple[str, ...]  # attribute keys of the primary key columns
    # many-to-one relationships and the tracked foreign key attributes the flush sets from them
    foreign_keys: tuple[tuple[str, tuple[str, ...]], ...]


_models: dict[type, MappedModel | None] = {}


def model_of(cls: type) -> MappedModel | None:
    options = REGISTRY.tracking_for(cls)
    if options is None:
        return None
    known = _models.get(cls)
    if known is not None and known.options is options:
        return known
    mapper: Mapper[Any] = inspect(cls)
    columns = tuple(prop for prop in mapper.column_attrs if options.tracks(prop.key))
    primary_key = tuple(mapper.get_property_by_column(column).key for column in mapper.primary_key)
    tracked = {prop.key for prop in columns}
    foreign_keys = tuple(
        (relationship.key, keys)
        for relationship in mapper.relationships
        if relationship.direction is MANYTOONE
        and (
            keys := tuple(
                k
                for c in relationship.local_columns
                if (k := mapper.get_property_by_column(c).key) in tracked
            )
        )
    )
    model = MappedModel(options, mapper, columns, primary_key, foreign_keys)
    _models[cls] = model
    return model


def guard(listener: Callable[..., Any]) -> Callable[..., Any]:
    """A listener's bug must never break the app's flush or commit."""

    def guarded(*args: Any) -> Any:
        try:
            return listener(*args)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            logs.warn("audit capture of SQLAlchemy changes failed", error=f"{type(exc).__name__}: {exc}")
            return None

    guarded.__name__ = listener.__name__
    return guarded


@guard
def before_flush(session: Session, _flush_context: Any, _instances: Any) -> None:
    if not REGISTRY.active:
        return
    before: dict[Any, dict[str, Any]] = {}
    for obj in session.dirty:
        model = model_of(type(obj))
        if model is not None:
            state = inspect(obj)
            unknown = [
                prop.key
                for prop in model.columns
                if (history := state.attrs[prop.key].history).added and not history.deleted
            ]
            # a reassigned relationship sets its foreign key during the flush: read it now if expired
            unknown += [
                key
                for name, keys in model.foreign_keys
                if state.attrs[name].history.has_changes()
                for key in keys
                if key not in state.dict and key not in unknown
            ]
            if unknown:
                before[state] = _read_row(session, model, state.identity, unknown)
    for obj in session.deleted:
        model = model_of(type(obj))
        if model is not None:
            state = inspect(obj)
            values = _loaded(state, model)
            missing = [prop.key for prop in model.columns if prop.key not in values]
            if missing:
                values.update(_read_row(session, model, state.identity, missing))
            before[state] = values
    if before:
        session.info[_BEFORE] = before


@guard
def after_flush(session: Session, _flush_context: Any) -> None:
    if not REGISTRY.active:
        return
    read_before: dict[Any, dict[str, Any]] = session.info.pop(_BEFORE, {})
    groups: list[ChangeGroup] = []
    kinds: tuple[tuple[ChangeKind, Any], ...] = (
        ("create", session.new),
        ("update", session.dirty),
        ("delete", session.deleted),
    )
    for kind, objects in kinds:
        for obj in objects:
            model = model_of(type(obj))
            if model is None:
                continue
            row = _row_change(kind, model, obj, read_before)
            if row is not None:
                groups.append(ChangeGroup([row]))
    if groups:
        stage_on(session, [stage(group) for group in groups])


def _row_change(
    kind: ChangeKind, model: MappedModel, obj: Any, read_before: Mapping[Any, dict[str, Any]]
) -> RowChange | None:
    state = inspect(obj)
    if kind == "create":
        created = _loaded(state, model)
        return row_change("create", _resource(model, obj, created), None, created)
    if kind == "delete":
        deleted = read_before.get(state, {})
        return row_change("delete", _resource(model, obj, deleted), deleted, None)
    known = read_before.get(state, {})
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for prop in model.columns:
        history = state.attrs[prop.key].history
        if not history.added and not history.deleted:
            continue
        after[prop.key] = plain(history.added[0]) if history.added else None
        if history.deleted:
            before[prop.key] = plain(history.deleted[0])
        elif prop.key in known:
            before[prop.key] = known[prop.key]
    return row_change("update", _resource(model, obj, _loaded(state, model, original=False)), before, after)


def _loaded(state: Any, model: MappedModel, *, original: bool = True) -> dict[str, Any]:
    """The tracked values the object holds (never triggers a load): as loaded, or as they are now."""
    values: dict[str, Any] = {}
    loaded = state.dict
    for prop in model.columns:
        key = prop.key
        if key not in loaded:
            continue
        history = state.attrs[key].history if original else None
        values[key] = plain(history.deleted[0] if history and history.deleted else loaded[key])
    return values


def _resource(model: MappedModel, obj: Any, values: Mapping[str, Any]) -> Resource:
    state = inspect(obj)
    identity = state.identity
    if identity is None:  # just inserted: the key is in the object, not yet in the identity map
        identity = tuple(state.dict.get(key) for key in model.primary_key)
    key = ",".join("" if part is None else str(part) for part in identity)
    return Resource(model.options.resource_type, key or None, name_of(model.options, values, obj))


def _read_row(session: Session, model: MappedModel, identity: Any, keys: Sequence[str]) -> dict[str, Any]:
    """The columns ``keys`` of one row as the database has them (a Core query: no flush, no events)."""
    if identity is None:
        return {}
    columns = [model.mapper.column_attrs[key].columns[0] for key in keys]
    statement = select(*columns).where(
        *(c == v for c, v in zip(model.mapper.primary_key, identity, strict=True))
    )
    found = session.connection(bind_arguments={"mapper": model.mapper}).execute(statement).first()
    return {} if found is None else {key: plain(value) for key, value in zip(keys, found, strict=True)}


def stage_on(session: Session, staged: list[StagedChanges]) -> None:
    transaction = session.get_nested_transaction() or session.get_transaction()
    if transaction is None:  # not expected after a flush; record rather than lose them
        for item in staged:
            commit(item)
        return
    pending: dict[SessionTransaction, list[StagedChanges]] = session.info.setdefault(_PENDING, {})
    pending.setdefault(transaction, []).extend(staged)


@guard
def after_commit(session: Session) -> None:
    if session.info.get(_PENDING):
        committed = session.get_nested_transaction() or session.get_transaction()
        session.info.setdefault(_COMMITTED, set()).add(committed)


@guard
def after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    pending: dict[SessionTransaction, list[StagedChanges]] | None = session.info.get(_PENDING)
    if not pending:
        return
    staged = pending.pop(transaction, None)
    committed: set[SessionTransaction] = session.info.get(_COMMITTED, set())
    was_committed = transaction in committed
    committed.discard(transaction)
    if staged is None or not was_committed:
        return  # rolled back (or closed without a commit): never recorded as done
    parent = transaction.parent
    while parent is not None and not parent.nested and parent.parent is not None:
        parent = parent.parent  # skip the flush's own subtransactions
    if parent is None:
        for item in staged:
            commit(item)
    else:  # a savepoint released: durable only when the enclosing transaction commits
        pending.setdefault(parent, []).extend(staged)
