"""Snapshots of field values: immutable, JSON-ready copies that never hide a change."""

from __future__ import annotations

import enum
from datetime import date, datetime, timezone
from decimal import Decimal
from uuid import UUID

from audit_middleware.capture.snapshots import MAX_ITEMS, MAX_TEXT, plain, snapshot


class Color(enum.Enum):
    RED = "red"


def test_plain_values_are_immutable_json_ready_copies():
    """Snapshots hold text, numbers and copied containers, never the objects the ORM holds."""
    mutable = {"tags": ["a"]}
    snapshot = plain(mutable)
    mutable["tags"].append("b")
    assert snapshot == {"tags": ["a"]}
    assert plain(datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc)) == "2026-01-02T03:04:00+00:00"
    assert plain(date(2026, 1, 2)) == "2026-01-02"
    assert plain(Decimal("2.50")) == "2.50"
    assert plain(UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert plain(Color.RED) == "red"
    assert plain({3, 1}) == [1, 3]
    assert plain(True) is True
    assert plain(object()).startswith("<object object")


def test_plain_bounds_long_text_without_hiding_a_change():
    """Text past the limit is cut with its length and hash: two long values never look equal."""
    one, two = plain("x" * MAX_TEXT + "a"), plain("x" * MAX_TEXT + "b")
    assert one.startswith("x" * MAX_TEXT)
    assert f"[{MAX_TEXT + 1} chars, sha256:" in one
    assert one != two
    assert plain(b"\x00" * 10) != plain(b"\x01" * 10)
    assert len(plain(list(range(MAX_ITEMS + 5)))) == MAX_ITEMS


def test_snapshot_of_details_is_not_reached_by_later_changes() -> None:
    """Nested lists and mappings of record(details=...) are copied; changing them later changes nothing."""
    roles = ["admin"]
    nested = {"limits": {"cpu": 2}, "tags": {"a"}}
    kept = snapshot({"roles": roles, "nested": nested, "count": 3})
    roles.append("root")
    nested["limits"]["cpu"] = 64
    nested["tags"].add("b")
    assert kept == {"roles": ["admin"], "nested": {"limits": {"cpu": 2}, "tags": {"a"}}, "count": 3}
