"""ORM-enabled bulk statements on registered classes: ``update(Model)`` and ``delete(Model)``.

Session events of a flush never see these, so ``do_orm_execute`` reads the rows a
statement matches before it runs (at most :data:`BULK_ROWS`; the rest are counted) and,
for an update, again after; the changes wait for the transaction like a flush's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import ORMExecuteState

from audit_middleware import logs
from audit_middleware.capture.changes import (
    REGISTRY,
    ChangeGroup,
    ChangeKind,
    name_of,
    row_change,
)
from audit_middleware.capture.snapshots import plain
from audit_middleware.capture.staging import stage
from audit_middleware.frameworks.sqlalchemy.session import MappedModel, model_of, stage_on
from audit_middleware.model.event import Resource

__all__ = ["BULK_ROWS", "do_orm_execute"]

BULK_ROWS = 1000
"""Rows of one bulk statement captured as targets; beyond that they are only counted."""


def do_orm_execute(state: ORMExecuteState) -> Any:
    if not (state.is_update or state.is_delete) or not REGISTRY.active:
        return None
    mapper = state.bind_mapper
    model = None if mapper is None else model_of(mapper.class_)
    if model is None or not state.is_orm_statement:
        return None
    try:
        before = _bulk_rows(state, model, None)
    except Exception as exc:  # noqa: BLE001 - the app's statement runs whatever auditing can read
        logs.warn("audit capture of a bulk statement failed", error=f"{type(exc).__name__}: {exc}")
        return None
    result = state.invoke_statement()
    try:
        _stage_bulk(state, model, before, result)
    except Exception as exc:  # noqa: BLE001 - as above
        logs.warn("audit capture of a bulk statement failed", error=f"{type(exc).__name__}: {exc}")
    return result


def _stage_bulk(
    state: ORMExecuteState, model: MappedModel, before: dict[tuple[Any, ...], dict[str, Any]], result: Any
) -> None:
    if not before:
        return
    kind: ChangeKind = "update" if state.is_update else "delete"
    after = _bulk_rows(state, model, list(before)) if kind == "update" else {}
    rows = []
    for identity, values in before.items():
        resource = Resource(
            model.options.resource_type,
            ",".join(str(part) for part in identity),
            name_of(model.options, after.get(identity, values), None),
        )
        row = row_change(kind, resource, values, after.get(identity) if kind == "update" else None)
        if row is not None:
            rows.append(row)
    count = getattr(result, "rowcount", None)
    if rows:
        group = ChangeGroup(rows, count=count if isinstance(count, int) and count > len(rows) else None)
        stage_on(state.session, [stage(group)])


def _bulk_rows(
    state: ORMExecuteState, model: MappedModel, identities: list[tuple[Any, ...]] | None
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The tracked columns of the rows a bulk statement touches (or of ``identities``), by key."""
    keys = [*model.primary_key, *(prop.key for prop in model.columns if prop.key not in model.primary_key)]
    columns = [model.mapper.column_attrs[key].columns[0] for key in keys]
    primary = list(model.mapper.primary_key)
    query = select(*columns).limit(BULK_ROWS)
    parameters = state.parameters
    if identities is None and isinstance(parameters, list):  # bulk UPDATE by primary key
        identities = [
            tuple(p.get(key) for key in model.primary_key) for p in parameters if isinstance(p, Mapping)
        ]
        parameters = None
    if identities is not None:
        key_column = primary[0] if len(primary) == 1 else tuple_(*primary)
        query = query.where(key_column.in_([i[0] for i in identities] if len(primary) == 1 else identities))
    else:
        where = getattr(state.statement, "whereclause", None)
        if where is not None:
            query = query.where(where)
    connection = state.session.connection(bind_arguments=state.bind_arguments)
    found = connection.execute(query, parameters if isinstance(parameters, Mapping) else None)
    width = len(model.primary_key)
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for values in found:
        identity = tuple(values[:width])
        rows[identity] = {
            key: plain(value) for key, value in zip(keys, values, strict=True) if model.options.tracks(key)
        }
    return rows
