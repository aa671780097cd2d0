"""Snapshots of field values: immutable, JSON-ready copies taken on the thread that wrote a row.

Nothing after the snapshot reads an ORM object, a session or an app object, so a record
can be finished (or derived later, on another thread) from what the snapshot holds.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

__all__ = ["MAX_ITEMS", "MAX_TEXT", "plain", "snapshot"]

MAX_TEXT = 4096
"""Characters of a text value kept in a snapshot; longer values end in a marker with a hash."""
MAX_ITEMS = 256
"""Items of a list or mapping value kept in a snapshot."""
_MAX_DEPTH = 8


def plain(value: Any, depth: int = 0) -> Any:  # noqa: PLR0911 - one return per kind of value
    """A snapshot of a field value made of immutable, JSON-ready parts.

    Text past :data:`MAX_TEXT` characters is cut and marked with its length and a hash
    (two different long values never look equal); bytes become a length and a hash;
    dates, decimals and UUIDs their text; enums their value; containers are copied
    (at most :data:`MAX_ITEMS` items, 8 levels deep); anything else its ``str()``.

    >>> plain(b"secret"), plain(Decimal("1.50")), plain([1, {"a": (2,)}])
    ('<6 bytes sha256:2bb80d537b1da3e3>', '1.50', [1, {'a': [2]}])
    """
    kind = type(value)
    if value is None or kind in (bool, int, float):
        return value
    if kind is str:
        return value if len(value) <= MAX_TEXT else _cut(value)
    if isinstance(value, enum.Enum):
        return plain(value.value, depth + 1)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return f"<{len(data)} bytes sha256:{hashlib.sha256(data).hexdigest()[:16]}>"
    if isinstance(value, str):  # a subclass, such as a framework's safe string
        return plain(str(value), depth)
    if isinstance(value, int | float):
        return int(value) if isinstance(value, int) else float(value)
    if depth >= _MAX_DEPTH:
        return "[nested too deep]"
    if isinstance(value, Mapping):
        return {str(k): plain(v, depth + 1) for k, v in _first(value.items())}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [plain(v, depth + 1) for v in _first(items)]
    text = str(value)
    return text if len(text) <= MAX_TEXT else _cut(text)


def _first(items: Iterable[Any]) -> Iterator[Any]:
    for index, item in enumerate(items):
        if index >= MAX_ITEMS:
            return
        yield item


def _cut(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{text[:MAX_TEXT]}\u2026[{len(text)} chars, sha256:{digest}]"


_CONTAINERS = (dict, list, set)


def snapshot(details: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``record(details=...)`` that later changes by the app cannot reach.

    The record is finished on the background worker, after ``record()`` returned, so
    what it says is fixed here: the mapping is copied, and so is every mutable container
    in it (flat details, the usual case, cost one pass over the values). Values keep
    their types: redaction, not the snapshot, decides what is stored.

    >>> roles = ["admin"]; kept = snapshot({"roles": roles}); roles.append("root"); kept
    {'roles': ['admin']}
    """
    copied = dict(details)
    for key, value in copied.items():
        if isinstance(value, _CONTAINERS):
            copied[key] = _deep(value, 0)
    return copied


def _deep(value: Any, depth: int) -> Any:
    if depth >= _MAX_DEPTH * 4 or not isinstance(value, _CONTAINERS):
        return value
    if isinstance(value, dict):
        return {k: _deep(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep(v, depth + 1) for v in value]
    return set(value)  # set items are hashable, so immutable enough
