"""The alert rules on the embedded store: windowed queries, alert state, and several writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit_middleware import Actor, PermissionChange, Resource, Scope, diff
from audit_middleware.model.actions import CATALOG
from audit_middleware.model.alerts import AlertRule, apply_overrides, default_rules
from audit_middleware.model.event import AuditEvent, RequestFacts
from audit_middleware.model.ids import uuid7
from audit_middleware.sinks.sqlite import SQLiteSink
from audit_middleware.sqlite import alerts
from audit_middleware.sqlite.connection import ConnectionPool

NOW = 1_800_000_000_000
MINUTE = 60_000


def event(action: str, *, at: int = NOW, tenant: str = "acme", **fields: object) -> AuditEvent:
    """An event of ``action`` at ``at`` (ms), by ``actor`` (default: mallory)."""
    actor = fields.pop("actor", Actor(name="mallory"))
    ip = fields.pop("ip", None)
    return AuditEvent(
        id=uuid7(at),
        unix_ms=at,
        action=CATALOG.get(action),
        actor=actor,  # type: ignore[arg-type]
        tenant=Scope(tenant),
        request=RequestFacts(client_ip=ip) if ip else None,  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[SQLiteSink, sqlite3.Connection]]:
    """A store to write events into, and an autocommit connection to evaluate the rules on."""
    sink = SQLiteSink(tmp_path / "audit.sqlite3")
    conn = sqlite3.connect(sink.path, isolation_level=None)
    yield sink, conn
    conn.close()
    sink.close()


def rules(**limits: int) -> tuple[AlertRule, ...]:
    """The default rules with failed logins at 3 (and any other threshold given)."""
    overrides = [("failed_logins_per_user", 3, None), ("failed_logins_per_ip", 3, None)]
    overrides += [(rule, threshold, None) for rule, threshold in limits.items()]
    return apply_overrides(default_rules(), overrides)


def test_failed_logins_fire_per_user_and_per_ip_within_the_window(db):
    """Three failed logins of one account from one IP in 10 minutes raise both alerts; older ones
    and those below the threshold do not."""
    sink, conn = db
    sink.write([event("login_failed", at=NOW - n * MINUTE, ip="203.0.113.7") for n in range(3)])
    sink.write([event("login_failed", at=NOW - n * MINUTE, actor=Actor(name="old")) for n in (11, 12, 13)])
    raised = alerts.evaluate(conn, rules(), NOW).raised
    assert sorted((a.rule, dict(a.key), a.value) for a in raised) == [
        ("failed_logins_per_ip", {"ip": "203.0.113.7"}, 3.0),
        ("failed_logins_per_user", {"user": "mallory"}, 3.0),
    ]


def test_every_rule_groups_by_tenant(db):
    """The same user and IP spread over two tenants (2 + 2) cross no threshold of 3."""
    sink, conn = db
    sink.write([event("login_failed", tenant=tenant, ip="203.0.113.7") for tenant in ("a", "b", "a", "b")])
    assert alerts.evaluate(conn, rules(), NOW).raised == ()
    sink.write([event("login_failed", tenant="a", ip="203.0.113.7")])
    assert {(a.tenant, a.rule) for a in alerts.evaluate(conn, rules(), NOW).raised} == {
        ("a", "failed_logins_per_user"),
        ("a", "failed_logins_per_ip"),
    }


def test_mass_deletion_counts_targets(db):
    """One bulk delete of 25 targets reaches a threshold of 20; 19 single deletes do not."""
    sink, conn = db
    bulk = Actor(email="dora@acme.example")
    sink.write([event("delete", actor=bulk, targets=tuple(Resource("pod", str(n)) for n in range(25)))])
    singles = Actor(email="sam@acme.example")
    sink.write([event("delete", actor=singles, resource=Resource("pod", str(n))) for n in range(19)])
    raised = alerts.evaluate(conn, rules(mass_deletion=20), NOW).raised
    assert [(a.rule, dict(a.key), a.value) for a in raised] == [
        ("mass_deletion", {"user": "dora@acme.example"}, 25.0)
    ]


def test_permission_escalation_names_each_granted_role(db):
    """A grant of two roles raises one alert per role; a record that only revokes raises none."""
    sink, conn = db
    root = Actor(email="root@acme.example")
    sink.write(
        [event("permissions_changed", actor=root, permissions=PermissionChange(added=("admin", "billing")))]
    )
    sink.write([event("permissions_changed", actor=root, changes=diff({"roles": ["admin"]}, {"roles": []}))])
    raised = alerts.evaluate(conn, rules(), NOW).raised
    assert sorted(a.key["role"] for a in raised) == ["admin", "billing"]
    assert {a.key["user"] for a in raised} == {"root@acme.example"}


def test_each_new_token_is_its_own_alert(db):
    """Two Token Created records are two alerts, each naming its record."""
    sink, conn = db
    tokens = [event("token_created", actor=Actor(email="tom@acme.example"), at=NOW - n) for n in range(2)]
    sink.write(tokens)
    raised = alerts.evaluate(conn, rules(), NOW).raised
    assert sorted(a.key["event"] for a in raised) == sorted(t.id for t in tokens)
    assert all(a.event_ids == (a.key["event"],) for a in raised)


def test_an_alert_stays_active_while_it_fires_then_completes(db):
    """More records update the ACTIVE alert (no new alert); once the window passes it is COMPLETED."""
    sink, conn = db
    sink.write([event("login_failed") for _ in range(3)])
    (first,) = [a for a in alerts.evaluate(conn, rules(), NOW).raised if a.rule == "failed_logins_per_user"]
    sink.write([event("login_failed", at=NOW + MINUTE)])
    later = alerts.evaluate(conn, rules(), NOW + MINUTE)
    assert later.raised == ()
    assert later.updated == 1
    (active,) = alerts.list_alerts(conn, state="ACTIVE", rules=rules())
    assert (active.id, active.value) == (first.id, 4.0)
    done = alerts.evaluate(conn, rules(), NOW + 20 * MINUTE)
    assert [a.id for a in done.completed] == [first.id]
    assert alerts.list_alerts(conn, state="ACTIVE") == []
    assert alerts.list_alerts(conn, state="COMPLETED")[0].ended_ms == NOW + 20 * MINUTE


def test_a_new_burst_after_completion_is_a_new_alert(db):
    """After an alert completed, the same group firing again raises a new one."""
    sink, conn = db
    sink.write([event("login_failed") for _ in range(3)])
    alerts.evaluate(conn, rules(), NOW)
    alerts.evaluate(conn, rules(), NOW + 20 * MINUTE)
    sink.write([event("login_failed", at=NOW + 21 * MINUTE) for _ in range(3)])
    (again,) = alerts.evaluate(conn, rules(), NOW + 21 * MINUTE).raised  # no IP: the per-user rule only
    stored = alerts.list_alerts(conn, state="ALL")
    assert [(a.id, a.state) for a in stored] == [(again.id, "ACTIVE"), (stored[1].id, "COMPLETED")]
    assert stored[1].id != again.id


def test_notification_is_handed_out_once_and_again_when_it_failed(db):
    """A raised alert is to be notified once; if the notifier failed, the next evaluation after the
    claim expired hands it out again; a notified one never."""
    sink, conn = db
    sink.write([event("token_created", actor=Actor(email="tom@acme.example"))])
    first = alerts.evaluate(conn, rules(), NOW)
    assert [a.rule for a in first.to_notify] == ["new_api_token"]
    assert alerts.evaluate(conn, rules(), NOW + 1000).to_notify == ()  # claimed by the first
    alerts.mark_notify_failed(conn, first.to_notify[0].id, "webhook down")
    retry = alerts.evaluate(conn, rules(), NOW + alerts.NOTIFY_CLAIM_MS + 1001)
    assert [a.id for a in retry.to_notify] == [first.to_notify[0].id]
    alerts.mark_notified(conn, [first.to_notify[0].id], NOW + 100_000)
    assert alerts.evaluate(conn, rules(), NOW + 10 * alerts.NOTIFY_CLAIM_MS).to_notify == ()


def test_the_query_reads_the_window_through_the_time_index(db):
    """A rule reads each tenant's rows in the window through events_by_time, not a table scan."""
    _, conn = db
    rule = next(r for r in default_rules() if r.id == "failed_logins_per_user")
    rows = conn.execute(f"EXPLAIN QUERY PLAN {alerts.compile_rule(rule)}", alerts.rule_parameters(rule, NOW))
    plan = " ".join(row[-1] for row in rows)
    assert "SEARCH events USING INDEX events_by_time (tenant=? AND unix_ms>? AND unix_ms<?)" in plan, plan
    assert "SCAN events" not in plan.replace("SCAN events_fts", ""), plan


WRITER = """
import sys, time
from audit_middleware import Actor, Scope
from audit_middleware.model.actions import CATALOG
from audit_middleware.model.event import AuditEvent, RequestFacts
from audit_middleware.model.ids import uuid7
from audit_middleware.model.alerts import apply_overrides, default_rules
from audit_middleware.sinks.sqlite import SQLiteSink

path, worker = sys.argv[1], sys.argv[2]
limits = [("failed_logins_per_user", 5, None), ("failed_logins_per_ip", 5, None)]
rules = apply_overrides(default_rules(), limits)
seen = []
sink = SQLiteSink(path, alert_rules=rules, on_alert=seen.append, alert_interval=0.2)
now = time.time_ns() // 1_000_000
for n in range(2):  # two failed logins per worker: no worker alone reaches five
    sink.emit(AuditEvent(id=uuid7(), unix_ms=now, action=CATALOG.get("login_failed"),
                         actor=Actor(name="mallory"), tenant=Scope("acme"),
                         request=RequestFacts(client_ip="203.0.113.7")))
sink.flush(10)
time.sleep(3)
sink.close()
print(worker, len(seen), ",".join(sorted(a.rule for a in seen)), flush=True)
"""


def test_workers_that_each_see_too_few_records_raise_the_alert_once(tmp_path: Path):
    """Three processes write two failed logins each into one file: together they cross five, so the
    alert is raised (once per rule) although no process saw more than two records."""
    path = tmp_path / "shared.sqlite3"
    SQLiteSink(path).close()
    workers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)], stdout=subprocess.PIPE, text=True)
        for n in range(3)
    ]
    outputs = [worker.communicate(timeout=60)[0].split() for worker in workers]
    notified = sorted(rule for output in outputs if len(output) > 2 for rule in output[2].split(","))
    assert notified == ["failed_logins_per_ip", "failed_logins_per_user"]
    with ConnectionPool(path, busy_timeout=5, synchronous="NORMAL").borrow() as conn:
        stored = alerts.list_alerts(conn, state="ALL")
        assert sorted(a.rule for a in stored) == notified
        assert all(a.value == 6 for a in stored)
        assert conn.execute("SELECT count(*) FROM alerts WHERE notified_ms IS NULL").fetchone()[0] == 0
    assert {a.tenant for a in stored} == {"acme"}
