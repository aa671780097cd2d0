"""App objects as mappings for redaction: which shapes are read, which are kept, which are masked."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import ipaddress
import pathlib
import uuid
from decimal import Decimal

import attrs
import pydantic
import pytest

from audit_middleware.processing.shapes import NO_FIELDS, fields_of, is_plain, text_of


@dataclasses.dataclass
class Point:
    x: int
    label: str


@attrs.define
class Box:
    size: int


class Model(pydantic.BaseModel):
    name: str
    key: pydantic.SecretStr


class Plain:
    def __init__(self) -> None:
        self.a = 1


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self) -> None:
        self.a = 1  # b is never set: only set slots are fields


class Empty:
    pass


def test_known_shapes_give_their_fields() -> None:
    """Dataclasses, attrs and pydantic models, and objects with __dict__ or __slots__ give their fields."""
    assert fields_of(Point(1, "p")) == {"x": 1, "label": "p"}
    assert fields_of(Box(3)) == {"size": 3}
    model = Model(name="n", key=pydantic.SecretStr("k"))
    assert fields_of(model) == {"name": "n", "key": model.key}
    assert fields_of(Plain()) == {"a": 1}
    assert fields_of(Slotted()) == {"a": 1}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(pydantic.SecretStr("k"), id="secret type"),
        pytest.param(ValueError("password=hunter2"), id="exception"),
        pytest.param(Empty(), id="no fields"),
        pytest.param(object(), id="object"),
        pytest.param(Point, id="a class"),
        pytest.param(print, id="a function"),
        pytest.param(collections, id="a module"),
    ],
)
def test_objects_without_a_readable_shape_have_no_fields(value: object) -> None:
    """Secret types, exceptions, code and field-less objects are not read (the caller masks them)."""
    assert fields_of(value) is NO_FIELDS


@pytest.mark.parametrize(
    "value",
    [3, 1.5, True, b"b", datetime.datetime(2026, 1, 1), datetime.time(1), uuid.UUID(int=1), Decimal()],
)
def test_plain_values(value: object) -> None:
    """Numbers, dates, UUIDs, decimals and bytes are kept as they are."""
    assert is_plain(value)


def test_text_like_values_become_text() -> None:
    """Paths, IP addresses and str subclasses become plain text; other objects are not text."""
    assert text_of(pathlib.PurePosixPath("/a/b")) == "/a/b"
    assert text_of(ipaddress.ip_address("192.0.2.1")) == "192.0.2.1"
    assert type(text_of(type("Markup", (str,), {})("x"))) is str
    assert text_of(Point(1, "p")) is None
