"""The four alerts as OpenSearch Alerting monitors, installed by setup and fired on their schedule.

``AlertScenario`` installs the monitors and sends real events through the real sink when
the session starts; the monitors run every minute, and these tests read the ACTIVE
alerts they raised. Notification channels need the Notifications plugin, which the
local node does not have: only the refusal of that configuration is tested.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from audit_middleware import Actor
from audit_middleware.cli import main
from audit_middleware.model.alerts import default_rules
from audit_middleware.opensearch.monitors import MONITORS, build_monitor
from audit_middleware.opensearch.provisioning import SetupConfig, SetupError, apply
from tests.conftest import OPENSEARCH_URL, require_plugin
from tests.integration.layout import remove_layout
from tests.integration.scenarios import AlertScenario, make_event

pytestmark = pytest.mark.opensearch

FIRST_RUN = 5 * 60  # seconds: a monitor first runs a minute after it is created; room for a busy machine


@pytest.fixture(autouse=True)
def _alerting(opensearch):
    require_plugin(opensearch, "opensearch-alerting")


def _bucket(alert: dict) -> dict:
    return alert["agg_alert_content"]["bucket"]


def _keys(alerts: list[dict]) -> list[dict]:
    return sorted((_bucket(alert)["key"] for alert in alerts), key=lambda key: sorted(key.items()))


def test_setup_installs_one_monitor_per_rule(alert_run):
    """setup creates one bucket-level monitor per rule, after the data streams."""
    steps = alert_run.milestones.wait("setup", 120)["steps"]
    monitors = [step for step in steps if " alert monitor " in step]
    assert [step.split()[-1] for step in monitors] == [
        f"{alert_run.prefix}-alert-{rule.id}" for rule in default_rules()
    ]
    assert all(step.startswith("created") for step in monitors)
    assert steps.index(monitors[0]) > max(i for i, step in enumerate(steps) if " data stream " in step)


def test_failed_logins_alert_names_the_user_per_tenant(alert_run):
    """Four failed logins of one account raise one ACTIVE alert naming the user and tenant;
    two in another tenant (same user, same IP) raise none."""
    alerts = alert_run.milestones.wait("failed_logins_per_user:active", FIRST_RUN)["alerts"]
    assert _keys(alerts) == [{"tenant": "acme", "user": "mallory"}]
    assert _bucket(alerts[0])["doc_count"] == 4
    recorded = {event.id for event in alert_run.events["logins"]}
    hits = _bucket(alerts[0])["records"]["hits"]["hits"]
    assert {hit["_source"]["event"]["id"] for hit in hits} == recorded


def test_failed_logins_alert_names_the_ip(alert_run):
    """The same logins, grouped by source IP, raise an alert naming the IP, in that tenant only."""
    alerts = alert_run.milestones.wait("failed_logins_per_ip:active", FIRST_RUN)["alerts"]
    assert _keys(alerts) == [{"ip": "203.0.113.7", "tenant": "acme"}]


def test_mass_deletion_counts_targets_not_records(alert_run):
    """One bulk delete of 25 targets (one record) crosses a threshold of 20 deletions."""
    alerts = alert_run.milestones.wait("mass_deletion:active", FIRST_RUN)["alerts"]
    assert _keys(alerts) == [{"tenant": "acme", "user": "dora@acme.example"}]
    bucket = _bucket(alerts[0])
    assert bucket["doc_count"] == 1
    assert bucket["targets"]["value"] == 25


def test_permission_escalation_names_the_granted_role(alert_run):
    """A Permissions Changed record whose roles change grants admin raises an alert naming admin."""
    alerts = alert_run.milestones.wait("permission_escalation:active", FIRST_RUN)["alerts"]
    assert _keys(alerts) == [{"role": "admin", "tenant": "acme", "user": "root@acme.example"}]


def test_new_api_token_raises_an_alert_per_record(alert_run):
    """Each Token Created record is its own alert, naming the actor and the record."""
    alerts = alert_run.milestones.wait("new_api_token:active", FIRST_RUN)["alerts"]
    (token,) = alert_run.events["token"]
    assert _keys(alerts) == [{"event": token.id, "tenant": "acme", "user": "tom@acme.example"}]


def test_alerts_list_reads_them_back_per_tenant(alert_run):
    """`alerts list` shows every ACTIVE alert with its tenant and key; --tenant filters."""
    for rule in default_rules():
        alert_run.milestones.wait(f"{rule.id}:active", FIRST_RUN)
    result = CliRunner().invoke(
        main, ["alerts", "list", "--url", OPENSEARCH_URL, "--prefix", alert_run.prefix, "--json"]
    )
    assert result.exit_code == 0, result.output
    listed = {
        (alert["rule"], alert["tenant"], json.dumps(alert["key"], sort_keys=True))
        for alert in json.loads(result.output)
    }
    assert ("failed_logins_per_user", "acme", '{"user": "mallory"}') in listed
    assert ("failed_logins_per_ip", "acme", '{"ip": "203.0.113.7"}') in listed
    assert ("mass_deletion", "acme", '{"user": "dora@acme.example"}') in listed
    assert all(alert[1] == "acme" for alert in listed)
    other = CliRunner().invoke(
        main, ["alerts", "list", "--url", OPENSEARCH_URL, "--prefix", alert_run.prefix, "--tenant", "globex"]
    )
    assert other.exit_code == 0
    assert "no alerts" in other.stderr


def test_update_keeps_the_active_alerts(alert_run):
    """setup with a new threshold updates only the failed-login monitors, keeping their trigger:
    the ACTIVE alert stays (same id) instead of being deleted and raised again."""
    updated = alert_run.milestones.wait("updated", FIRST_RUN + 60)
    changed = [step for step in updated["steps"] if not step.startswith("unchanged")]
    assert sorted(step.split()[-1] for step in changed) == sorted(
        f"{alert_run.prefix}-alert-{rule}" for rule in ("failed_logins_per_user", "failed_logins_per_ip")
    )
    assert all(step.startswith("updated") for step in changed)
    kept = alert_run.milestones.wait("kept", 5 * 60)
    assert kept["deleted_ids"] == []
    assert kept["active_ids"] == updated["alert_ids"]
    assert kept["trigger_name"] == f"failed_logins_per_user: 4 records in {AlertScenario.WINDOW}"
    assert kept["alert_triggers"] == [kept["trigger_id"]]


# -- without waiting for a run ----------------------------------------------------------------


@pytest.fixture
def prefix(opensearch, unique_name):
    """A prefix no other test uses; its layout and monitors are removed afterwards."""
    yield unique_name
    remove_layout(opensearch, unique_name)


def test_setup_twice_leaves_every_monitor_unchanged(opensearch, prefix):
    """A second setup finds each monitor by name and, since it holds the desired body, leaves it."""
    apply(opensearch, SetupConfig(prefix=prefix, replicas=0))
    again = [
        r for r in apply(opensearch, SetupConfig(prefix=prefix, replicas=0)) if r.step.kind == "alert monitor"
    ]
    assert len(again) == len(default_rules())
    assert {r.status for r in again} == {"unchanged"}


def test_a_rule_turned_off_removes_its_monitor(opensearch, prefix):
    """Dropping a rule removes its monitor (and only it) at the next setup."""
    apply(opensearch, SetupConfig(prefix=prefix, replicas=0))
    rules = tuple(rule for rule in default_rules() if rule.id != "new_api_token")
    results = {
        str(r.step): r.status
        for r in apply(opensearch, SetupConfig(prefix=prefix, replicas=0, alert_rules=rules))
    }
    assert (
        results[f"alert monitor {prefix}-alert-new_api_token (its rule is no longer configured)"] == "removed"
    )
    assert [status for step, status in results.items() if step.startswith("alert monitor")].count(
        "unchanged"
    ) == 4
    again = [
        str(r.step) for r in apply(opensearch, SetupConfig(prefix=prefix, replicas=0, alert_rules=rules))
    ]
    assert not any("new_api_token" in step for step in again)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        pytest.param("alert_webhook", "https://hooks.example.com/T/B/X", id="webhook"),
        pytest.param("alert_channel", "ops-pager", id="channel"),
    ],
)
def test_a_notification_channel_without_the_notifications_plugin_is_refused_clearly(
    opensearch, prefix, option, value
):
    """The local node has no Notifications plugin: a webhook or channel is refused before any change,
    saying what is missing and that monitors work without it."""
    with pytest.raises(SetupError, match="needs the OpenSearch Notifications plugin") as refused:
        apply(opensearch, SetupConfig(prefix=prefix, replicas=0, **{option: value}))
    assert "audit-middleware alerts list" in str(refused.value)
    assert not opensearch.indices.exists_index_template(name=f"{prefix}-events")


def test_cli_alert_webhook_is_refused_with_exit_1(opensearch, prefix):
    """`setup --alert-webhook` on a cluster without Notifications exits 1 with the reason."""
    result = CliRunner().invoke(
        main,
        [
            "setup",
            "--url",
            OPENSEARCH_URL,
            "--prefix",
            prefix,
            "--replicas",
            "0",
            "--alert-webhook",
            "https://h.example/x",
        ],
    )
    assert result.exit_code == 1
    assert "Notifications plugin" in result.stderr


def test_a_monitor_with_a_notification_action_renders_its_message(opensearch, prefix):
    """With a channel, each trigger gets an action sent once per new alert, whose message names the
    alert's key; a dry run on the real node renders it (sending needs the Notifications plugin)."""
    apply(opensearch, SetupConfig(prefix=prefix, replicas=0, alert_rules=()))
    event = make_event("token_created", actor=Actor(email="tom@acme.example"), tenant="acme")
    opensearch.index(
        index=f"{prefix}-standard", id=event.id, body=event.to_document(), op_type="create", refresh=True
    )
    rule = next(rule for rule in default_rules() if rule.id == "new_api_token")
    body = build_monitor(prefix, rule, [f"{prefix}-standard"], destination_id="some-channel")
    run = opensearch.transport.perform_request(
        "POST", f"{MONITORS}/_execute", params={"dryrun": "true"}, body=body
    )
    assert run["error"] is None
    (trigger,) = run["trigger_results"].values()
    assert trigger["error"] is None
    outputs = [
        action["output"]["message"]
        for per_bucket in trigger["action_results"].values()
        for action in per_bucket.values()
    ]
    assert outputs, trigger
    assert all("tom@acme.example" in message and "acme" in message for message in outputs)
