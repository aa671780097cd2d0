"""`alerts check` and `alerts list` on the SQLite store, through the command line."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner

from audit_middleware import Actor, Scope
from audit_middleware.cli import main
from audit_middleware.model.actions import CATALOG
from audit_middleware.model.event import AuditEvent, RequestFacts
from audit_middleware.model.ids import uuid7
from audit_middleware.model.tenancy import NO_TENANT_KEY, scope_key
from audit_middleware.sinks.sqlite import SQLiteSink
from tests.sinks.test_notify import Hook


def _store(tmp_path: Path, failed_logins: int, tenants: tuple[str | None, ...] = ("acme",)) -> Path:
    path = tmp_path / "audit.sqlite3"
    now = time.time_ns() // 1_000_000
    events = [
        AuditEvent(id=uuid7(now), unix_ms=now, action=CATALOG.get("login_failed"), actor=Actor(name="eve"),
                   tenant=Scope.of(tenant), request=RequestFacts(client_ip="192.0.2.4"))
        for tenant in tenants
        for _ in range(failed_logins)
    ]  # fmt: skip
    with SQLiteSink(path) as sink:
        sink.write(events)
    return path


def test_alerts_check_raises_and_prints_the_alerts_to_notify(tmp_path: Path):
    """`alerts check` evaluates the rules now; the alerts it raised are printed, then listed."""
    store = _store(tmp_path, failed_logins=5)
    result = CliRunner().invoke(main, ["alerts", "check", "--store", f"sqlite:{store}"])
    assert result.exit_code == 0, result.output
    assert "[acme] user=eve: 5 (>= 5 in 10m), ACTIVE" in result.output
    assert "[acme] ip=192.0.2.4: 5 (>= 5 in 10m), ACTIVE" in result.output
    listed = json.loads(
        CliRunner().invoke(main, ["alerts", "list", "--store", f"sqlite:{store}", "--json"]).output
    )
    assert sorted(alert["rule"] for alert in listed) == ["failed_logins_per_ip", "failed_logins_per_user"]
    again = CliRunner().invoke(main, ["alerts", "check", "--store", f"sqlite:{store}"])
    assert "no alerts" in again.stderr  # handed out once


def test_alerts_check_takes_thresholds_and_posts_to_a_webhook(tmp_path: Path):
    """--alert changes a threshold; --webhook POSTs each new alert."""
    store = _store(tmp_path, failed_logins=2)
    hook = Hook()
    try:
        args = ["alerts", "check", "--store", f"sqlite:{store}", "--webhook", hook.url,
                "--alert", "failed_logins_per_user=2/5m", "--alert", "failed_logins_per_ip=off"]  # fmt: skip
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert [body["alert"]["key"] for _, _, body in hook.received] == [{"user": "eve"}]
    finally:
        hook.close()


def test_alerts_list_filters_by_tenant_and_state(tmp_path: Path):
    """--tenant and --state narrow the list."""
    store = _store(tmp_path, failed_logins=5)
    CliRunner().invoke(main, ["alerts", "check", "--store", f"sqlite:{store}"])
    other = CliRunner().invoke(main, ["alerts", "list", "--store", f"sqlite:{store}", "--tenant", "globex"])
    assert "no alerts" in other.stderr
    done = CliRunner().invoke(main, ["alerts", "list", "--store", f"sqlite:{store}", "--state", "COMPLETED"])
    assert "no alerts" in done.stderr


def test_alerts_list_maps_the_tenant_as_the_stores_do(tmp_path: Path):
    """Alerts group by the stored tenant key; --tenant finds an over-long tenant's, '-' those without one."""
    long_tenant = "t" * 1500
    store = _store(tmp_path, failed_logins=5, tenants=(long_tenant, "-", None))
    CliRunner().invoke(
        main, ["alerts", "check", "--store", f"sqlite:{store}", "--alert", "failed_logins_per_ip=off"]
    )

    def listed(*tenant: str) -> list[str]:
        args = ["alerts", "list", "--store", f"sqlite:{store}", "--json", *tenant]
        return [alert["tenant"] for alert in json.loads(CliRunner().invoke(main, args).output)]

    assert len(listed()) == 3, "the tenant named '-' is not merged with the records without one"
    assert listed("--tenant", long_tenant) == [scope_key(long_tenant)]
    assert listed("--tenant", "-") == [NO_TENANT_KEY]


def test_alerts_check_on_opensearch_points_to_the_monitors():
    """On OpenSearch the monitors evaluate the rules: `alerts check` says to use `alerts list`."""
    result = CliRunner().invoke(main, ["alerts", "check", "--store", "opensearch"])
    assert result.exit_code == 2
    assert "alerts list" in result.output
