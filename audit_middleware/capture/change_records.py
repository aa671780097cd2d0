"""How the row changes of registered models read as one audit record.

Pure: given plain :class:`~audit_middleware.capture.changes.RowChange` values it picks the
action, the resource, the targets and the ``audit.changes`` of the record; the recorder
decides when (see the precedence table in docs/architecture.md).

One row: its action (create, update, delete), the row as resource, and its change as
is. Several rows (a bulk statement, a cascade, a request that wrote many rows): the
action all rows share (else the main row's), the main row as resource (else, when all
rows have one type, that type), every row in ``audit.targets``, ``details.count``, and
the changes keyed by ``type:id``: ``before["post:3"]["title"]``, field ``post:3.title``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from audit_middleware.capture.changes import RowChange, target_key
from audit_middleware.model.event import ChangeSet, Resource

__all__ = ["Description", "describe"]


@dataclass(frozen=True, slots=True)
class Description:
    """The parts of a record that row changes decide."""

    action: str
    resource: Resource
    targets: tuple[Resource, ...]
    changes: ChangeSet
    details: dict[str, Any]


def describe(
    rows: Sequence[RowChange], *, total: int, primary: RowChange | None = None, path: str | None = None
) -> Description:
    """Describe ``rows`` (at least one) as one record; ``total`` counts rows not captured too.

    The main row is ``primary`` when the ORM said which row the operation was about,
    else the first row whose id is a segment of the request ``path`` (``/posts/3/delete``
    is about post 3, not the comments deleted with it), else none.
    """
    if len(rows) == 1 and total <= 1:
        row = rows[0]
        return Description(row.kind, row.resource, (), row.change_set(), {})
    main = primary or _named_by_path(rows, path)
    kinds = Counter(row.kind for row in rows)
    action = next(iter(kinds)) if len(kinds) == 1 else (main or rows[0]).kind
    types = {row.resource.type for row in rows}
    if main is not None:
        resource = main.resource
    else:
        resource = Resource(types.pop()) if len(types) == 1 else rows[0].resource
    details: dict[str, Any] = {"count": max(total, len(rows))}
    if len(kinds) > 1:
        details["actions"] = dict(kinds)
    return Description(action, resource, tuple(row.resource for row in rows), keyed(rows), details)


def keyed(rows: Sequence[RowChange]) -> ChangeSet:
    """The changes of several rows in one change set, each row under its ``type:id`` key."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    fields: list[str] = []
    for row in rows:
        key = target_key(row.resource)
        if row.before:
            before[key] = row.before
        if row.after:
            after[key] = row.after
        fields.extend(f"{key}.{field}" for field in row.fields)
    return ChangeSet(before, after, tuple(sorted(fields)))


def _named_by_path(rows: Sequence[RowChange], path: str | None) -> RowChange | None:
    if not path:
        return None
    segments = {segment for segment in path.split("/") if segment}
    return next((row for row in rows if row.resource.id in segments), None)
