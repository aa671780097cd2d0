"""Stored keys of tenant and project ids: one mapping, injective, never the no-tenant key."""

from __future__ import annotations

import pickle

from hypothesis import given
from hypothesis import strategies as st

from audit_middleware.model.event import AuditEvent, Scope
from audit_middleware.model.tenancy import (
    HASHED_PREFIX,
    KEY_LIMIT,
    NO_TENANT,
    NO_TENANT_KEY,
    scope_key,
    tenant_key,
)
from tests.query.conftest import make_event

_ids = st.one_of(
    st.text(max_size=40),
    st.text(min_size=1000, max_size=1100),
    st.just("-"),
    st.builds(lambda tail: HASHED_PREFIX + tail, st.text(max_size=70)),
    st.builds(lambda s: "\U0001f680" * s, st.integers(500, 520)),
)


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def test_ordinary_ids_are_their_own_key() -> None:
    """Ids that fit and mean nothing special are stored as they are."""
    assert [scope_key(tenant) for tenant in ("acme", "org-7", "Ünïcode", "x" * KEY_LIMIT)] == [
        "acme",
        "org-7",
        "Ünïcode",
        "x" * KEY_LIMIT,
    ]
    assert scope_key(42) == "42"


def test_special_ids_are_hashed() -> None:
    """The no-tenant key, over-long ids (in UTF-16 units), '~' ids and lone surrogates are hashed."""
    for tenant in ("-", "x" * (KEY_LIMIT + 1), "\U0001f680" * 513, "~acme", "a\udc80"):
        key = scope_key(tenant)
        assert key.startswith(HASHED_PREFIX)
        assert len(key) == 65, tenant[:10]


def test_no_tenant_selector() -> None:
    """NO_TENANT maps to the no-tenant key, survives pickling, and equals no string."""
    assert tenant_key(NO_TENANT) == NO_TENANT_KEY
    assert pickle.loads(pickle.dumps(NO_TENANT)) is NO_TENANT
    assert NO_TENANT != "-"
    assert repr(NO_TENANT) == "NO_TENANT"


@given(_ids, _ids)
def test_keys_are_injective(first: str, second: str) -> None:
    """Property: two different ids never share a key."""
    if first != second:
        assert scope_key(first) != scope_key(second)


@given(_ids)
def test_keys_are_indexable_and_never_the_no_tenant_key(tenant: str) -> None:
    """Property: every key fits the keyword limit, is stable, and is not the no-tenant key."""
    key = scope_key(tenant)
    assert key != NO_TENANT_KEY
    assert _utf16_units(key) <= KEY_LIMIT
    assert scope_key(tenant) == key
    assert key == tenant or key.startswith(HASHED_PREFIX)


@given(_ids)
def test_documents_store_the_key_and_read_back_the_id(tenant: str) -> None:
    """Property: the document holds the key as organization.id; reading it back gives the id."""
    event = make_event("create", tenant=tenant, project=tenant)
    document = event.to_document()
    assert document["organization"]["id"] == scope_key(tenant)
    assert document["audit"]["project"]["id"] == scope_key(tenant)
    restored = AuditEvent.from_document(document)
    assert restored.tenant == Scope(tenant)
    assert restored.project == Scope(tenant)
