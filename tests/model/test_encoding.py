"""JSON encoding of documents: compact UTF-8, odd keys and values made encodable, deep nesting cut."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime, timezone

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
