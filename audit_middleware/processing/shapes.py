"""App objects as the mappings redaction can read: dataclasses, pydantic and attrs models, and more.

Apps put their own objects in ``details`` and in change values. The JSON encoder would
write a dataclass field by field, and anything else as its ``repr``, both past the key
rules of redaction. So before redaction looks at a value, :func:`fields_of` turns the
shapes it knows into a plain mapping of field name to value, which is then redacted like
any other mapping (and recursively, so nested models are read too):

* dataclass instances (their fields), attrs instances (``__attrs_attrs__``), pydantic
  models (v2 and v1 declare ``model_fields`` / ``__fields__``);
* other objects with instance attributes (``__dict__``) or ``__slots__``.

(Named tuples are containers: redaction reads them by their ``_fields``.) Values that
are safe as they are (:func:`is_plain`: numbers, dates, UUIDs, decimals, enums, bytes,
numeric numpy values) pass through; text-like objects (paths, IP addresses) become their text.
What is none of these (a socket, a C object, an exception, a pydantic ``SecretStr``,
an object without readable fields) has no shape to redact: the caller masks it, and its
``repr`` is never stored. No framework is imported: shapes are recognised by the
attributes those libraries define.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import types
import uuid
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any, Final

__all__ = ["NO_FIELDS", "fields_of", "is_plain", "text_of"]

NO_FIELDS: Final = None
"""What :func:`fields_of` returns for an object it cannot read: mask it."""

_PLAIN: Final = (
    int,  # bool too
    float,
    bytes,
    bytearray,
    datetime.date,  # datetime too
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
    Decimal,
    Enum,
)
_TEXT_LIKE: Final = (
    PurePath,
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
)
# Objects that are code, not data: their attributes are the program itself.
_CODE: Final = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def is_plain(value: object) -> bool:
    """Whether ``value`` is stored as it is: a number, date, time, UUID, decimal, enum or bytes."""
    if isinstance(value, _PLAIN):
        return True
    # numpy numbers and numeric arrays (the encoder writes them); an object array may hold anything
    dtype = getattr(value, "dtype", None)
    return type(value).__module__ == "numpy" and getattr(dtype, "kind", "O") != "O"


def text_of(value: object) -> str | None:
    """The text of a text-like object (a str subclass, a path, an IP address), else None."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, _TEXT_LIKE):
        return str(value)
    return None


def fields_of(value: object) -> Mapping[str, Any] | None:
    """``value``'s fields as a mapping when its shape is known, else ``NO_FIELDS`` (mask it).

    >>> @dataclasses.dataclass
    ... class Credentials:
    ...     user: str
    ...     password: str
    >>> fields_of(Credentials("ann", "S3CR3T"))
    {'user': 'ann', 'password': 'S3CR3T'}
    """
    if isinstance(value, (*_CODE, BaseException)) or _is_secret_type(value):
        return NO_FIELDS
    if dataclasses.is_dataclass(value):
        return {field.name: getattr(value, field.name, None) for field in dataclasses.fields(value)}
    kind = type(value)
    attrs_fields = getattr(kind, "__attrs_attrs__", None)
    if attrs_fields is not None:
        return {field.name: getattr(value, field.name, None) for field in attrs_fields}
    declared = _model_fields(value)
    if declared is not None:
        return declared
    return _attributes(value)


def _is_secret_type(value: object) -> bool:
    # pydantic's SecretStr / SecretBytes and look-alikes: their whole point is the secret.
    return callable(getattr(type(value), "get_secret_value", None))


def _model_fields(value: object) -> Mapping[str, Any] | None:
    """A pydantic model's fields, one level deep (nested models stay objects, read in turn)."""
    kind = type(value)
    fields = getattr(kind, "model_fields", None)  # pydantic v2
    if fields is None:
        fields = getattr(kind, "__fields__", None)  # pydantic v1
    if not isinstance(fields, Mapping):
        return None
    return {name: getattr(value, name, None) for name in fields}


def _attributes(value: object) -> Mapping[str, Any] | None:
    """Instance attributes from ``__dict__`` and ``__slots__``; None when there are none."""
    found: dict[str, Any] = {}
    for kind in type(value).__mro__:
        slots = kind.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and hasattr(value, name):
                found[name] = getattr(value, name)
    instance = getattr(value, "__dict__", None)
    if isinstance(instance, Mapping):
        found.update(instance)
    return found or NO_FIELDS
