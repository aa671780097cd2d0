"""Hostile tenant ids and search strings against the real node: only ever the tenant's own records.

Part of the hostile-input run (``tests/hostile``): the same generated tenant ids ('-',
over-long, shared prefixes, '~', emoji past the keyword limit) and free text, on the
OpenSearch store, through the same mapping as the SQLite store.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_middleware.model.event import AuditEvent, Resource
from audit_middleware.model.tenancy import NO_TENANT
from audit_middleware.query.model import AuditQuery
from tests.hostile import tally
from tests.hostile.test_hostile_inputs import HOSTILE, _foreign, _tenant_ids, check_search
from tests.query.conftest import make_event

pytestmark = pytest.mark.opensearch

ON_THE_NODE = settings(HOSTILE, max_examples=min(HOSTILE.max_examples, 400))


@pytest.fixture(scope="module")
def node_store(opensearch: Any) -> Iterator[tuple[Any, Any, Any]]:
    """A freshly set-up prefix on the local node, its store, and its tier router."""
    from audit_middleware.opensearch.provisioning import SetupConfig, apply  # noqa: PLC0415
    from audit_middleware.query.opensearch_store import OpenSearchStore  # noqa: PLC0415

    prefix = f"t-hostile-{uuid.uuid4().hex[:8]}"
    config = SetupConfig(prefix=prefix, replicas=0, require_ism=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        apply(opensearch, config)
    store = OpenSearchStore(opensearch, prefix=prefix)
    yield opensearch, store, config.router()
    opensearch.indices.delete_data_stream(name=f"{prefix}-*")
    opensearch.indices.delete_index_template(name=f"{prefix}-*")
    opensearch.cluster.delete_component_template(name=f"{prefix}-*")


def _load(client: Any, router: Any, events: list[AuditEvent]) -> None:
    body: list[dict[str, Any]] = []
    for event in events:
        stream = router.data_stream_for(router.tier_for(event.tenant.id if event.tenant else None))
        body += [{"create": {"_index": stream, "_id": event.id}}, event.to_document()]
    answer = client.bulk(body=body, refresh="true")
    assert not answer["errors"], answer


@ON_THE_NODE
@given(tenants=st.lists(_tenant_ids, min_size=1, max_size=3, unique=True), untenanted=st.booleans())
def test_tenants_only_ever_read_their_own_on_opensearch(
    tenants: list[str], untenanted: bool, node_store: tuple[Any, Any, Any]
) -> None:
    """Each hostile tenant id reads only its own records on the real node; none reads as 'no tenant'."""
    tally.case("tenant isolation (OpenSearch)")
    client, store, router = node_store
    marker = f"m{uuid.uuid4().hex}"
    events: dict[Any, AuditEvent] = {
        tenant: make_event("create", tenant=tenant, resource=Resource("pod", "p", marker))
        for tenant in tenants
    }
    if untenanted:
        events[NO_TENANT] = make_event("create", tenant=None, resource=Resource("pod", "p", marker))
    _load(client, router, list(events.values()))
    for tenant, own in events.items():
        found = store.search(AuditQuery.build(tenant, search=marker)).events
        foreign = _foreign(found, tenant)
        tally.saw("cross_tenant_reads", foreign)
        assert foreign == 0
        lost = 0 if [event.id for event in found] == [own.id] else 1
        tally.saw("records_lost", lost)
        assert lost == 0
        for other, event in events.items():
            if other is not tenant and store.get(tenant, event.id) is not None:
                tally.saw("cross_tenant_reads")
                pytest.fail(f"tenant {tenant!r} read a record of {other!r}")


@ON_THE_NODE
@given(text=st.text(max_size=220), tenant=_tenant_ids)
def test_search_strings_are_only_values_on_opensearch(
    text: str, tenant: str, node_store: tuple[Any, Any, Any]
) -> None:
    """Any free text is a value on the real node too: a clear QueryError, or this tenant's records only."""
    tally.case("search string (OpenSearch)")
    check_search(node_store[1], tenant, text)
