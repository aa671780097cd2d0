"""JSON encoding of documents: compact UTF-8, odd keys and values made encodable, deep nesting cut."""

from __future__ import annotations

import dataclasses
import enum
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from audit_middleware.model.encoding import dumps, loads


class Level(enum.Enum):
    HIGH = "high"


def depth_of(value: object) -> tuple[int, object]:
    """How many single-item lists wrap the innermost value, and that value."""
    depth = 0
    while isinstance(value, list):
        value = value[0]
        depth += 1
    return depth, value


def test_output_is_compact_utf8() -> None:
    """No spaces between tokens, and non-ASCII text as UTF-8 rather than escapes."""
    assert dumps({"name": "Zoë", "n": [1, 2]}) == '{"name":"Zoë","n":[1,2]}'.encode()


def test_tuples_encode_as_lists() -> None:
    """A tuple (frozen dataclasses hold them) is a JSON array."""
    assert loads(dumps({"roles": ("admin", "ops")})) == {"roles": ["admin", "ops"]}


@pytest.mark.parametrize(
    ("key", "text"),
    [
        (7, "7"),
        (2.5, "2.5"),
        (None, "null"),
        (Level.HIGH, "high"),
        (date(2024, 11, 25), "2024-11-25"),
        (datetime(2024, 11, 25, 16, 0, tzinfo=timezone.utc), "2024-11-25T16:00:00+00:00"),
        (uuid.UUID(int=2), "00000000-0000-0000-0000-000000000002"),
    ],
    ids=["int", "float", "none", "enum", "date", "datetime", "uuid"],
)
def test_keys_that_are_not_text_become_text(key: object, text: str) -> None:
    """Mappings keyed by ids, enums, dates or UUIDs (common in app models) still encode."""
    assert loads(dumps({key: "v"})) == {text: "v"}


def test_a_key_that_is_not_text_deep_in_a_document_keeps_the_rest_as_it_was() -> None:
    """Text keys are tried first; one other key anywhere takes the whole document the slower way."""
    document = {"event": {"id": "e1"}, "audit": {"details": {"rows": {3: "x", "b": [1, 2]}}}}
    assert dumps(document) == b'{"event":{"id":"e1"},"audit":{"details":{"rows":{"3":"x","b":[1,2]}}}}'


@pytest.mark.parametrize("innermost", [1, "\udc80"], ids=["plain", "needs-sanitising"])
def test_nesting_deeper_than_orjson_allows_is_cut(innermost: object) -> None:
    """A document nested past orjson's limit encodes, with the deepest part replaced by a marker."""
    value: object = innermost
    for _ in range(300):
        value = [value]
    depth, found = depth_of(loads(dumps({"deep": value}))["deep"])
    assert found == "[nested too deep]"
    assert 200 < depth < 254


def test_loads_takes_text_or_bytes() -> None:
    """loads() parses str and bytes alike."""
    assert loads('{"a": 1}') == loads(b'{"a": 1}') == {"a": 1}


def test_loads_refuses_invalid_json() -> None:
    """Invalid input raises a ValueError (orjson's JSONDecodeError is one)."""
    with pytest.raises(ValueError):  # noqa: PT011 - orjson's own message
        loads(b"{not json")


class Colour:
    """An app object with no JSON form."""

    def __repr__(self) -> str:
        return "Colour(red)"


@dataclasses.dataclass
class Point:
    x: int
    label: str


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("12.50"), "12.50"),
        (datetime(2024, 11, 25, 16, 0, 0, 123000, tzinfo=timezone.utc), "2024-11-25T16:00:00.123000+00:00"),
        ({"b", "a"}, ["a", "b"]),
        (frozenset({3}), [3]),
        (b"ok\xff", "ok\ufffd"),
        (bytearray(b"x"), "x"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (Colour(), "Colour(red)"),
        (Point(1, "p"), {"x": 1, "label": "p"}),
        (2**64 - 1, 2**64 - 1),
        (-(2**63), -(2**63)),
        (float("nan"), None),
    ],
    ids=lambda v: type(v).__name__,
)
def test_odd_values_encode(value, expected):
    """Values from app models encode to readable JSON instead of failing the record."""
    assert loads(dumps({"v": value})) == {"v": expected}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a\ud800b", "a\ufffdb"),
        ("\udcff", "\ufffd"),
        ({"k\udc80": "v"}, {"k\ufffd": "v"}),
        (["ok", {"deep": ["\ud83d"]}], ["ok", {"deep": ["\ufffd"]}]),
        ({"s": {"x\udc80"}}, {"s": ["x\ufffd"]}),
        (Point(1, "\udc80"), {"x": 1, "label": "\ufffd"}),
        (2**64, str(2**64)),
        (-(2**63) - 1, str(-(2**63) - 1)),
        ({(1, 2): "tuple key"}, {"(1, 2)": "tuple key"}),
    ],
    ids=[
        "lone-high",
        "lone-low",
        "key",
        "nested",
        "set",
        "dataclass",
        "int-too-big",
        "int-too-small",
        "tuple-key",
    ],
)
def test_values_orjson_refuses_are_sanitised(value, expected):
    """Lone surrogates, >64-bit ints and odd keys do not crash encoding; they are made valid."""
    encoded = dumps({"v": value, "fine": "é"})
    assert encoded.decode("utf-8")  # valid UTF-8
    assert loads(encoded) == {"v": expected, "fine": "é"}
