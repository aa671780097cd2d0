"""The demo (the README's main command) runs, and gives the same answers on both stores."""

from __future__ import annotations

import warnings

import pytest

from audit_middleware.opensearch.client import build_client
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.opensearch.provisioning import SetupConfig, apply
from audit_middleware.query import AuditQuery, AuditStore
from audit_middleware.query.opensearch_store import OpenSearchStore
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.sinks.opensearch.sink import OpenSearchSink
from audit_middleware.sinks.sqlite import SQLiteSink
from integrations import demo
from tests.conftest import OPENSEARCH_URL
from tests.integration.layout import remove_layout

QUERIES = [
    {"tenant": "acme"},
    {"tenant": "acme", "action": "start-stop"},
    {"tenant": "acme", "action": "login_failed"},
    {"tenant": "acme", "user": "dave@acme.example"},
    {"tenant": "acme", "search": "web"},
    {"tenant": "globex", "resource_type": "member"},
    {"tenant": "globex", "outcome": "failure"},
]


def answers(store: AuditStore) -> list[list[tuple[str | None, ...]]]:
    """What each query finds, without ids and times (they differ between runs), sorted.

    Sorted because two runs of the scenario order records made in the same millisecond by
    their random ids; the stores' newest-first order is checked by the query contract tests.
    """
    found = []
    for filters in QUERIES:
        tenant = filters.pop("tenant")
        events = store.search(AuditQuery.build(tenant, page_size=200, **filters)).events
        filters["tenant"] = tenant
        found.append(
            sorted(
                (
                    (
                        e.action.id,
                        e.actor.email,
                        e.outcome,
                        e.resource.type if e.resource else None,
                        e.resource.name if e.resource else None,
                    )
                    for e in events
                ),
                key=repr,
            )
        )
    return found


def run_into_sqlite(tmp_path) -> SQLiteStore:
    with SQLiteSink(tmp_path / "demo.sqlite3") as sink:
        demo.run_scenario(demo.build_app(sink))
    return SQLiteStore(tmp_path / "demo.sqlite3")


def test_demo_command_runs_and_prints_searches_and_an_export(tmp_path, monkeypatch, capsys):
    """`python -m integrations.demo` records the scenario, prints searches, a diff and an export."""
    monkeypatch.setattr(demo, "STATE", tmp_path)
    assert demo.main(["--no-serve"]) == 0
    printed = capsys.readouterr().out
    assert "$ audit-middleware search --tenant acme --action start-stop" in printed
    assert "Login Failed" in printed
    assert 'spec.image: "nginx:1.27" -> "nginx:1.28"' in printed
    exported = (tmp_path / "acme-audit-sqlite.csv").read_text(encoding="utf-8").splitlines()
    assert exported[0].startswith("timestamp,user,")
    assert len(exported) > 25


def test_scenario_records_every_product_action(tmp_path):
    """The scenario produces all 17 product actions across the two tenants."""
    store = run_into_sqlite(tmp_path)
    seen = {
        event.action.id for tenant in ("acme", "globex") for event in store.iterate(AuditQuery.build(tenant))
    }
    product = {
        "create",
        "update",
        "delete",
        "start",
        "stop",
        "restart",
        "login",
        "logout",
        "login_failed",
        "token_created",
        "token_revoked",
        "ssh_key_added",
        "ssh_key_deleted",
        "invite_sent",
        "invite_accepted",
        "member_removed",
        "permissions_changed",
    }
    assert product <= seen
    store.close()


@pytest.mark.opensearch
def test_same_scenario_gives_the_same_answers_on_opensearch(opensearch, tmp_path, unique_name):
    """Run against the local OpenSearch node, the scenario answers every query as SQLite does."""
    sqlite = run_into_sqlite(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a node without ISM would warn that retention is unmanaged
        apply(opensearch, SetupConfig(prefix=unique_name, replicas=0, require_ism=False, alert_rules=()))
    settings = ConnectionSettings(urls=(OPENSEARCH_URL,), prefix=unique_name)
    sink = OpenSearchSink(settings=settings, state_dir=tmp_path / "state")
    try:
        demo.run_scenario(demo.build_app(sink))
        assert sink.flush(30)
        opensearch.indices.refresh(index=f"{unique_name}-*")
        store = OpenSearchStore(build_client(settings), prefix=unique_name)
        assert answers(store) == answers(sqlite)
        assert all(answers(store))  # every query found something
    finally:
        sink.close(5)
        sqlite.close()
        remove_layout(opensearch, unique_name)
