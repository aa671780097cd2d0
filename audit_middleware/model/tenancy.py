"""How a tenant (or project) id is stored and looked up: one mapping for every store and query.

A tenant id is the boundary of every read, so each one must land on a stored key of its
own, the same on SQLite and OpenSearch, and never on the key of records without a
tenant. Most ids are their own key. Three kinds are not, and are stored as a keyed
hash of the whole id instead (:func:`scope_key`), with the id itself kept in the record
(``audit.organization.original_id``, not indexed) so reads return it unchanged:

* ids longer than :data:`KEY_LIMIT` UTF-16 code units: OpenSearch does not index a
  keyword past its ``ignore_above`` (1,024, counted in UTF-16 code units), so such a
  tenant would look like "no tenant" there. Truncating instead would merge tenants
  that share a prefix; rejecting would lose the record;
* the no-tenant key itself (``"-"``): a tenant of that name would otherwise read the
  records made without a tenant;
* ids starting with :data:`HASHED_PREFIX`, the mark of a hashed key, and ids holding
  lone surrogates (text decoded from bad UTF-8, which no store keeps exactly).

Hashed keys are ``~`` followed by 64 hex digits of HMAC-SHA256 under a fixed, versioned
key (:data:`_HASH_KEY`). The key is not a secret (the original id sits in the same
record); it separates this use of SHA-256 from any other, and being fixed, the mapping
needs no configuration and is the same in every process, store and version. Because
every id that starts with ``~`` is hashed too, a plain key never starts with ``~``: two
ids share a key only if SHA-256 collides.

Queries name the tenant they read with :data:`NO_TENANT` (records made without a tenant)
or an id; :func:`tenant_key` maps either to the stored key. Project filters and
allow-lists name :data:`NO_PROJECT` (records made outside any project) or project ids,
which :func:`scope_key` maps like tenant ids: no project id, not even ``"-"``, stands
for "no project".
"""

from __future__ import annotations

import hashlib
import hmac
from typing import ClassVar, Final

__all__ = [
    "HASHED_PREFIX",
    "KEY_LIMIT",
    "NO_PROJECT",
    "NO_TENANT",
    "NO_TENANT_KEY",
    "NoProject",
    "NoTenant",
    "ProjectSelector",
    "TenantSelector",
    "scope_key",
    "tenant_key",
]

NO_TENANT_KEY: Final = "-"
"""The stored tenant key of records made without a tenant."""
KEY_LIMIT: Final = 1024
"""Longest id, in UTF-16 code units, stored as itself (OpenSearch's keyword ``ignore_above``)."""
HASHED_PREFIX: Final = "~"
"""The first character of a hashed key (and of no other key)."""
_HASH_KEY: Final = b"audit-middleware scope key v1"


class _Marker:
    """A selector no id equals: one instance per subclass, named by ``_name``, kept by pickling."""

    __slots__ = ()
    _name: ClassVar[str]

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name  # unpickles as the one instance


class NoTenant(_Marker):
    """The type of :data:`NO_TENANT`: selects the records made without a tenant."""

    __slots__ = ()
    _name = "NO_TENANT"


NO_TENANT: Final = NoTenant()
"""Query the records made without a tenant (no tenant id can name them, not even ``"-"``)."""

TenantSelector = str | NoTenant
"""What a query is scoped to: a tenant id, or :data:`NO_TENANT`."""


class NoProject(_Marker):
    """The type of :data:`NO_PROJECT`: selects the records made outside any project."""

    __slots__ = ()
    _name = "NO_PROJECT"


NO_PROJECT: Final = NoProject()
"""In a project filter or allow-list: the records made outside any project (no id names them)."""

ProjectSelector = str | NoProject
"""One entry of a project filter or allow-list: a project id, or :data:`NO_PROJECT`."""


def scope_key(scope_id: object) -> str:
    """The stored key of a tenant or project id: the id itself, or a keyed hash of all of it.

    >>> scope_key("acme")
    'acme'
    >>> scope_key("-").startswith("~"), len(scope_key("x" * 2000))
    (True, 65)
    """
    text = scope_id if isinstance(scope_id, str) else str(scope_id)
    if _stored_as_is(text):
        return text
    digest = hmac.new(_HASH_KEY, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return HASHED_PREFIX + digest


def tenant_key(tenant: TenantSelector) -> str:
    """The stored tenant key a query for ``tenant`` looks up.

    >>> tenant_key(NO_TENANT), tenant_key("acme")
    ('-', 'acme')
    """
    return NO_TENANT_KEY if isinstance(tenant, NoTenant) else scope_key(tenant)


def _stored_as_is(text: str) -> bool:
    if text == NO_TENANT_KEY or text.startswith(HASHED_PREFIX):
        return False
    if len(text) > KEY_LIMIT:  # at least that many UTF-16 code units
        return False
    if text.isascii():
        return True
    try:
        encoded = text.encode("utf-16-le")  # raises for a lone surrogate
    except UnicodeEncodeError:
        return False
    return len(encoded) // 2 <= KEY_LIMIT
