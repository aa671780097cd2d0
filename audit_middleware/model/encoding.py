"""JSON encoding of documents: orjson (measured faster, see docs/architecture.md), tolerant of odd values."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import orjson

_STR_KEYS_ONLY = orjson.OPT_SERIALIZE_NUMPY
# OPT_NON_STR_KEYS doubles orjson's time on every document (measured: 0.77 -> 1.47 µs for a
# 0.7 KB record), and keys other than text are rare (change details of odd models): it is
# the second try, taken when the first refuses the document.
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_SURROGATE = re.compile("[\ud800-\udfff]")
_INT64 = range(-(2**63), 2**64)  # orjson's integer range (signed 64-bit low end, unsigned high end)
# Keys orjson encodes under OPT_NON_STR_KEYS; any other key becomes its str().
_KEY_TYPES = (str, int, float, bool, type(None), datetime, date, time, Enum, UUID)


def _fallback(value: Any) -> Any:
    # Change details come from app models: keep them readable rather than fail the record.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    return _SURROGATE.sub("\ufffd", repr(value))


def dumps(document: Any) -> bytes:
    """Encode to compact UTF-8 JSON; datetimes, UUIDs, dataclasses and sets all encode.

    Values orjson refuses (lone surrogates in text, integers beyond 64 bits, keys of
    other types) are made encodable rather than lose the record: surrogates become
    U+FFFD, huge integers and odd keys their ``str()``.

    >>> dumps({"name": "a\\udc80b"})
    b'{"name":"a\\xef\\xbf\\xbdb"}'
    """
    try:
        return orjson.dumps(document, default=_fallback, option=_STR_KEYS_ONLY)
    except orjson.JSONEncodeError:
        pass
    try:
        return orjson.dumps(document, default=_fallback, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return orjson.dumps(_sanitize(document, 0), default=_fallback, option=_OPTIONS)


def _sanitize(value: Any, depth: int) -> Any:  # noqa: PLR0911 - one return per kind of value
    """A copy of ``value`` that orjson accepts, for the rare document it refused."""
    if depth > 250:  # orjson's own nesting limit is 254
        return "[nested too deep]"
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, bool | float) or value is None:
        return value
    if isinstance(value, int):
        return value if value in _INT64 else str(value)
    if isinstance(value, Mapping):
        return {_key(k): _sanitize(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_sanitize(v, depth + 1) for v in value]
    if isinstance(value, set | frozenset | Decimal | bytes | bytearray | memoryview):
        return _sanitize(_fallback(value), depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _sanitize(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value)}
    return value  # datetimes, UUIDs, numpy: orjson handles them; anything else goes to _fallback


def _key(key: Any) -> Any:
    if isinstance(key, str):
        return _SURROGATE.sub("\ufffd", key)
    if isinstance(key, _KEY_TYPES) and not (isinstance(key, int) and key not in _INT64):
        return key
    return _SURROGATE.sub("\ufffd", str(key))


def loads(data: bytes | str) -> Any:
    """Decode JSON."""
    return orjson.loads(data)
