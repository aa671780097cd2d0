"""The orjson serializer the OpenSearch client uses: bodies in and out, odd values, prepared bodies."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from audit_middleware.opensearch.serializer import OrjsonSerializer

serializer = OrjsonSerializer()


@pytest.mark.parametrize("body", [b'{"took": 3, "items": [{"create": {"status": 201}}]}', '{"a": [1, "é"]}'])
def test_loads_parses_bytes_and_text(body: str | bytes) -> None:
    """A response body parses the same as the standard library would."""
    assert serializer.loads(body) == json.loads(body)


def test_dumps_gives_compact_text() -> None:
    """A request body becomes compact JSON text (opensearch-py joins bodies as str)."""
    encoded = serializer.dumps({"query": {"term": {"user.id": "é"}}, "size": 2})
    assert isinstance(encoded, str)
    assert encoded == '{"query":{"term":{"user.id":"é"}},"size":2}'


@pytest.mark.parametrize("body", ['{"index": {}}\n{"a": 1}\n', b'{"create": {}}\n{"b": 2}\n'])
def test_prepared_bodies_pass_through(body: str | bytes) -> None:
    """Text and bytes (the shipper's NDJSON bulk bodies) are sent exactly as given."""
    assert serializer.dumps(body) is body


def test_odd_values_use_the_clients_fallback() -> None:
    """Decimals and dates, which orjson refuses or formats itself, still encode."""
    value = {
        "price": Decimal("12.50"),
        "day": date(2024, 11, 25),
        "at": datetime(2024, 11, 25, 16, 0, tzinfo=timezone.utc),
        "id": uuid.UUID(int=1),
    }
    assert json.loads(serializer.dumps(value)) == {
        "price": 12.5,
        "day": "2024-11-25",
        "at": "2024-11-25T16:00:00+00:00",
        "id": "00000000-0000-0000-0000-000000000001",
    }


def test_an_unencodable_value_is_the_clients_error() -> None:
    """A value neither orjson nor the fallback knows raises (it is a bug in the caller, not data)."""
    with pytest.raises(TypeError, match="not JSON serializable"):
        serializer.dumps({"x": object()})


def test_round_trip() -> None:
    """What dumps() writes, loads() reads back."""
    document = {"event": {"id": "0192", "action": "create"}, "n": [1, 2.5, None, True]}
    assert serializer.loads(serializer.dumps(document)) == document
