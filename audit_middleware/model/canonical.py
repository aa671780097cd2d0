"""The canonical bytes of a JSON document: RFC 8785, the JSON Canonicalization Scheme (JCS).

The hash chain (``model.chain``) hashes these bytes, so ``verify`` can re-canonicalise
whatever it reads back (SQLite's JSON text, OpenSearch's ``_source``, an export line) and
needs no byte-identical storage: key order, whitespace and number spelling (``1.0`` or
``1``, ``1e2`` or ``100``) do not matter; values do.

The reference encoder is the ``rfc8785`` package. It is pure Python and spends most of
its time per value, so documents without floats, with ASCII keys and with safe integers
(almost every audit record) take a fast path: orjson with sorted keys writes exactly the
same bytes for them (the property tests in ``tests/model/test_canonical.py`` compare the
two on generated documents, and golden vectors pin both). Anything else goes to
``rfc8785``.

One extension: an integer beyond ±(2**53 - 1), which JCS cannot represent (I-JSON numbers
are doubles), is encoded as the JSON string of its decimal digits, the form I-JSON
recommends for such numbers, instead of failing the record.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
import rfc8785

__all__ = ["CanonicalizationError", "canonical_bytes"]

CanonicalizationError = rfc8785.CanonicalizationError

_SAFE: Final = 2**53  # exclusive bound of the integers JCS represents exactly
_SORTED: Final = orjson.OPT_SORT_KEYS


def canonical_bytes(value: Any) -> bytes:
    """The RFC 8785 encoding of a JSON value (dicts, lists, str, int, float, bool, None).

    >>> canonical_bytes({"b": [1.0, 2e0, "é"], "a": None})
    b'{"a":null,"b":[1,2,"\\xc3\\xa9"]}'

    Raises ``CanonicalizationError`` for NaN, infinities and lone surrogates, which no
    JSON document read back from a store contains.
    """
    if _plain(value):
        try:
            return orjson.dumps(value, option=_SORTED)
        except orjson.JSONEncodeError:  # a lone surrogate: the reference encoder says why
            pass
    try:
        return rfc8785.dumps(value)
    except rfc8785.IntegerDomainError:
        return rfc8785.dumps(_big_integers_as_text(value))


def _plain(value: Any) -> bool:  # noqa: PLR0911 - one answer per kind of value
    """Whether orjson's sorted output is the JCS output: no floats, ASCII keys, safe integers."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                return False  # JCS sorts by UTF-16 code units, orjson by code points
            item_kind = type(item)
            if item_kind is str or item_kind is bool or item is None:
                continue
            if not _plain(item):
                return False
        return True
    if kind is int:
        return bool(-_SAFE < value < _SAFE)
    if kind is list:
        return all(_plain(item) for item in value)
    return False  # floats (ECMAScript number spelling), tuples, anything else: the reference encoder


def _big_integers_as_text(value: Any) -> Any:
    if type(value) is int and not -_SAFE < value < _SAFE:
        return str(value)
    if isinstance(value, dict):
        return {key: _big_integers_as_text(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_big_integers_as_text(item) for item in value]
    return value
