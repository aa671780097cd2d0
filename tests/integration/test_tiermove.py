"""A tenant moved from the standard to the extended tier, with `retention move`, on the real node."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from audit_middleware import Actor, Resource
from audit_middleware.cli import main
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.opensearch.provisioning import SetupConfig, apply
from audit_middleware.query.model import AuditQuery
from audit_middleware.query.opensearch_store import OpenSearchStore
from audit_middleware.sinks.opensearch.sink import OpenSearchSink
from tests.conftest import OPENSEARCH_URL
from tests.integration.layout import remove_layout
from tests.integration.scenarios import FAST, make_event, send

pytestmark = pytest.mark.opensearch


@pytest.fixture
def prefix(opensearch, unique_name):
    """A set-up prefix (both tiers), removed afterwards."""
    apply(opensearch, SetupConfig(prefix=unique_name, replicas=0, alert_rules=()))
    yield unique_name
    remove_layout(opensearch, unique_name)


def _sink(prefix: str, state, tenant_tiers: dict[str, str]) -> OpenSearchSink:
    config = SetupConfig(prefix=prefix, alert_rules=())
    settings = ConnectionSettings(urls=(OPENSEARCH_URL,), prefix=prefix)
    return OpenSearchSink(
        settings=settings, router=config.router(tenant_tiers=tenant_tiers), state_dir=state, options=FAST
    )


def _tiers(client, prefix: str, tenant: str) -> dict[str, int]:
    client.indices.refresh(index=f"{prefix}-*")
    counts = {}
    for tier in ("standard", "extended"):
        query = {"query": {"term": {"organization.id": tenant}}}
        counts[tier] = client.count(index=f"{prefix}-{tier}", body=query)["count"]
    return counts


def test_moved_tenant_history_gets_the_new_tier(opensearch, prefix, tmp_path):
    """A tenant's history in standard moves to extended (one copy each, tier rewritten); the other
    tenants stay; the query layer sees every record once; a second run moves nothing."""
    actor = Actor(email="mo@mover.example")
    before = _sink(prefix, tmp_path / "before", {})
    history = send(
        before,
        [
            make_event("update", actor=actor, tenant="mover", resource=Resource("pod", f"p{n}"))
            for n in range(30)
        ],
    )
    others = send(
        before,
        [make_event("update", actor=actor, tenant="stayer", resource=Resource("pod", "s")) for _ in range(5)],
    )
    before.close(5)
    after = _sink(prefix, tmp_path / "after", {"mover": "extended"})  # the router first: new records go there
    newer = send(
        after,
        [make_event("update", actor=actor, tenant="mover", resource=Resource("pod", "n")) for _ in range(5)],
    )
    after.close(5)
    assert _tiers(opensearch, prefix, "mover") == {"standard": 30, "extended": 5}

    command = [
        "retention",
        "move",
        "--url",
        OPENSEARCH_URL,
        "--prefix",
        prefix,
        "--tenant",
        "mover",
        "--to",
        "extended",
    ]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0, result.output
    assert "moved 30 records of mover to extended (0 were there already)" in result.output
    assert _tiers(opensearch, prefix, "mover") == {"standard": 0, "extended": 35}
    assert _tiers(opensearch, prefix, "stayer") == {"standard": 5, "extended": 0}

    store = OpenSearchStore(opensearch, prefix=prefix)
    found = list(store.iterate(AuditQuery.build("mover", page_size=500)))
    assert sorted(e.id for e in found) == sorted(e.id for e in history + newer)
    hits = opensearch.search(
        index=f"{prefix}-extended", body={"size": 100, "query": {"ids": {"values": [history[0].id]}}}
    )
    assert hits["hits"]["hits"][0]["_source"]["audit"]["tier"] == "extended"
    assert len(list(store.iterate(AuditQuery.build("stayer", page_size=500)))) == len(others)

    again = CliRunner().invoke(main, command)
    assert "moved 0 records of mover to extended" in again.output


def test_move_to_an_unknown_tier_is_refused(opensearch, prefix):
    """A tier setup did not install is a clear error, and nothing moves."""
    command = [
        "retention",
        "move",
        "--url",
        OPENSEARCH_URL,
        "--prefix",
        prefix,
        "--tenant",
        "x",
        "--to",
        "gold",
    ]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1
    assert "'gold' is not one of the tiers" in result.stderr
