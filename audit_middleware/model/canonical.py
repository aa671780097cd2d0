"""The canonical bytes of a JSON document: RFC 8785, the JSON Canonicalization Scheme (JCS).

The hash chain (``model.chain``) hashes these bytes, so ``verify`` can re-canonicalise
whatever it reads back (SQLite's JSON text, OpenSearch's ``_source``, an export line) and
needs no byte-identical storage: key order, whitespace and number spelling (``1.0`` or
``1``, ``1e2`` or ``100``) do not matter; values do.

The reference encoder is the ``rfc8785`` package. It is pure Python and spends most of
its time per value, so orjson with sorted keys writes the bytes first, and they are kept
when they can only be the JCS bytes: no float anywhere (a float's spelling differs, and
orjson writes NaN as ``null`` where JCS refuses it), integers within ±(2**53 - 1)
(orjson's strict-integer option refuses the rest), and no character beyond the Basic
Multilingual Plane (JCS sorts keys by UTF-16 code units, orjson by code points; the two
orders differ only there). orjson itself refuses every type beyond JSON's own; a float is
found by a walk that reads only each value's type (measured about half the cost of
scanning the output's bytes outside text, and never misled by text that looks like a
number); a character beyond the BMP by its UTF-8 lead byte anywhere in the output. Almost
every audit record passes. The property tests in ``tests/model/test_canonical.py``
compare the result with the reference on generated documents, and golden vectors pin
both.

One extension: an integer beyond ±(2**53 - 1), which JCS cannot represent (I-JSON numbers
are doubles), is encoded as the JSON string of its decimal digits, the form I-JSON
recommends for such numbers, instead of failing the record.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
import rfc8785

__all__ = ["CanonicalizationError", "canonical_bytes", "plain_canonical_bytes"]

CanonicalizationError = rfc8785.CanonicalizationError

_SAFE: Final = 2**53  # exclusive bound of the integers JCS represents exactly
_SORTED: Final = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_LEAVES: Final = frozenset((str, int, bool, type(None)))  # exactly these types, not subclasses
_CONTAINERS: Final = frozenset((dict, list, tuple))
# Only JSON's own types: datetimes, dataclasses and subclasses of str, int, dict and list
# raise instead of being written as orjson writes them.
_STRICT: Final = (
    _SORTED
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_BEYOND_BMP: Final = tuple(bytes([lead]) for lead in range(0xF0, 0xF5))  # lead bytes of 4-byte UTF-8


def canonical_bytes(value: Any) -> bytes:
    """The RFC 8785 encoding of a JSON value (dicts, lists, str, int, float, bool, None).

    >>> canonical_bytes({"b": [1.0, 2e0, "é"], "a": None})
    b'{"a":null,"b":[1,2,"\\xc3\\xa9"]}'

    Raises ``CanonicalizationError`` for NaN, infinities and lone surrogates, which no
    JSON document read back from a store contains.
    """
    plain = plain_canonical_bytes(value)
    if plain is not None:
        return plain
    if _json_only(value, ascii_keys=True):  # text beyond the BMP outside keys: orjson sorts as JCS does
        try:
            return orjson.dumps(value, option=_SORTED)
        except orjson.JSONEncodeError:  # a lone surrogate or a huge integer: the reference encoder
            pass
    try:
        return rfc8785.dumps(value)
    except rfc8785.IntegerDomainError:
        return rfc8785.dumps(_big_integers_as_text(value))


def plain_canonical_bytes(value: Any) -> bytes | None:
    """The canonical bytes of ``value`` if it holds only plain JSON values (see the module
    docstring: no float, str keys, safe integers, nothing beyond the BMP), else None.

    It never calls the reference encoder: a writer uses it to skip a round trip through
    JSON text that only the other values need.
    """
    try:
        encoded = orjson.dumps(value, option=_STRICT)
    except TypeError:  # orjson.JSONEncodeError is one: an odd type, a huge integer, a lone surrogate
        return None
    if not (encoded.isascii() or not any(lead in encoded for lead in _BEYOND_BMP)):
        return None
    return encoded if _json_only(value, ascii_keys=False) else None


def _json_only(value: Any, *, ascii_keys: bool) -> bool:
    """Whether ``value`` holds only text, integers, booleans, nulls and dicts, lists and tuples
    of them (no float anywhere), and with ``ascii_keys`` only ASCII text keys.

    Only types are read, without recursion. The writers' shortcut leaves keys and integers
    to orjson, which has refused the other key types, the subclasses and the integers JCS
    cannot represent before this runs.
    """
    pending = [value]
    while pending:
        container = pending.pop()
        kind = type(container)
        if kind in _LEAVES:
            continue
        if kind not in _CONTAINERS:
            return False
        if kind is dict:
            # JCS sorts keys by UTF-16 code units, orjson by code points: equal for ASCII keys
            if ascii_keys and not all(type(key) is str and key.isascii() for key in container):
                return False
            items = container.values()
        else:
            items = container
        for item in items:
            item_kind = type(item)
            if item_kind in _LEAVES:
                continue
            if item_kind not in _CONTAINERS:
                return False
            pending.append(item)
    return True


def _big_integers_as_text(value: Any) -> Any:
    if type(value) is int and not -_SAFE < value < _SAFE:
        return str(value)
    if isinstance(value, dict):
        return {key: _big_integers_as_text(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_big_integers_as_text(item) for item in value]
    return value
