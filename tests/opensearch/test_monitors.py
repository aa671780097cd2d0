"""The alert rules compiled to Alerting monitors: names, grouping, thresholds, and reading alerts back."""

from __future__ import annotations

from audit_middleware.model.alerts import default_rules
from audit_middleware.opensearch import monitors


def _rule(rule_id: str):
    return next(rule for rule in default_rules() if rule.id == rule_id)


def test_each_rule_is_a_bucket_level_monitor_over_the_named_streams():
    """A monitor per rule, named after it, every minute, over the streams by name (never a wildcard)."""
    body = monitors.build_monitor(
        "audit", _rule("failed_logins_per_user"), ["audit-standard", "audit-extended"]
    )
    assert body["name"] == "audit-alert-failed_logins_per_user"
    assert body["monitor_type"] == "bucket_level_monitor"
    assert body["schedule"] == {"period": {"interval": 1, "unit": "MINUTES"}}
    assert body["inputs"][0]["search"]["indices"] == ["audit-standard", "audit-extended"]


def test_the_query_keeps_the_rule_actions_in_its_window():
    """The search filters the rule's actions and @timestamp in [period_end - window, period_end]."""
    query = monitors.build_query(_rule("mass_deletion"))
    terms, window = query["query"]["bool"]["filter"]
    assert terms["terms"]["event.action"] == ["delete"]
    assert window["range"]["@timestamp"]["from"] == "{{period_end}}||-10m"
    assert window["range"]["@timestamp"]["to"] == "{{period_end}}"


def test_every_monitor_groups_by_tenant_first_with_placeholders_for_missing_values():
    """The first composite source is the tenant (a script: '-' without one); user is a script too."""
    sources = monitors.build_query(_rule("permission_escalation"))["aggregations"]["by_key"]["composite"][
        "sources"
    ]
    assert [next(iter(source)) for source in sources] == ["tenant", "user", "role"]
    tenant, user, role = (next(iter(source.values()))["terms"] for source in sources)
    assert "'-'" in tenant["script"]["source"]
    assert "'(none)'" in user["script"]["source"]
    assert role["field"] == "audit.permissions.added"
    assert not any(terms.get("missing_bucket") for terms in (tenant, user, role))


def test_counting_rules_count_records_and_mass_deletion_sums_targets():
    """The trigger compares _count, or the sum of audit.target_count (missing counts 1), to the threshold."""
    logins = monitors.build_monitor("a", _rule("failed_logins_per_ip"), ["a-standard"])
    deletes = monitors.build_monitor("a", _rule("mass_deletion"), ["a-standard"])
    login_trigger = logins["triggers"][0]["bucket_level_trigger"]
    delete_trigger = deletes["triggers"][0]["bucket_level_trigger"]
    assert login_trigger["condition"]["script"]["source"] == "params._count >= 5"
    assert delete_trigger["condition"]["script"]["source"] == "params.targets >= 20"
    targets = deletes["inputs"][0]["search"]["query"]["aggregations"]["by_key"]["aggregations"]["targets"]
    assert targets == {"sum": {"field": "audit.target_count", "missing": 1}}
    assert login_trigger["name"] == "failed_logins_per_ip: 5 records in 10m"
    assert login_trigger["actions"] == []


def test_a_destination_adds_one_action_per_new_alert():
    """With a channel id, the trigger notifies once per new alert (not on every run)."""
    body = monitors.build_monitor("a", _rule("new_api_token"), ["a-standard"], destination_id="chan")
    (action,) = body["triggers"][0]["bucket_level_trigger"]["actions"]
    assert action["destination_id"] == "chan"
    assert action["action_execution_policy"]["action_execution_scope"]["per_alert"]["actionable_alerts"] == [
        "NEW"
    ]


def test_an_update_carries_the_stored_trigger_and_action_ids():
    """The PUT body keeps the ids the server gave the trigger and its actions, so alerts stay attached."""
    desired = monitors.build_monitor("a", _rule("new_api_token"), ["a-standard"], destination_id="chan")
    stored = {
        "triggers": [{"bucket_level_trigger": {"id": "T1", "name": "old name", "actions": [{"id": "A1"}]}}]
    }
    body = monitors._with_stored_ids(desired, stored)
    trigger = body["triggers"][0]["bucket_level_trigger"]
    assert trigger["id"] == "T1"
    assert trigger["actions"][0]["id"] == "A1"
    assert "id" not in desired["triggers"][0]["bucket_level_trigger"]  # the desired body is not changed


def test_an_alert_is_read_from_its_bucket_key():
    """Tenant and keys come from agg_alert_content.bucket.key (by name; bucket_keys has no fixed order)."""
    raw = {
        "id": "x1",
        "state": "ACTIVE",
        "monitor_name": "audit-alert-mass_deletion",
        "trigger_name": "mass_deletion: 20 targets in 10m",
        "start_time": 5,
        "last_notification_time": 6,
        "agg_alert_content": {
            "bucket_keys": ["dora", "acme"],
            "bucket": {
                "key": {"user": "dora", "tenant": "acme"},
                "doc_count": 1,
                "targets": {"value": 25.0},
                "records": {"hits": {"hits": [{"_id": "e1", "_source": {"event": {"id": "e1"}}}]}},
            },
        },
    }
    alert = monitors._alert(raw, "audit")
    assert alert is not None
    assert (alert.rule, alert.tenant, dict(alert.key)) == ("mass_deletion", "acme", {"user": "dora"})
    assert (alert.value, alert.threshold, alert.window) == (25.0, 20, "10m")
    assert alert.event_ids == ("e1",)
    assert alert.title == "Mass deletion by one actor"
