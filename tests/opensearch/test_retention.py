"""Retention tiers as ISM policies, as built in code."""

from __future__ import annotations

import pytest

from audit_middleware.errors import AuditValidationError
from audit_middleware.opensearch.provisioning import SetupConfig
from audit_middleware.opensearch.retention import (
    ISM_TEMPLATE_PRIORITY,
    RetentionTier,
    build_policy,
    default_tiers,
    policy_id,
)

# --- retention ------------------------------------------------------------------------------


def test_default_tiers_keep_90_and_configurable_extended_days():
    """Standard keeps 90 days; extended keeps what it is given (365 by default)."""
    standard, extended = default_tiers()
    assert (standard.name, standard.min_index_age) == ("standard", "90d")
    assert (extended.name, extended.min_index_age) == ("extended", "365d")
    assert default_tiers(extended_days=2555)[1].min_index_age == "2555d"


def test_policy_rolls_over_then_deletes_by_index_age():
    """Without a repository the policy is hot (rollover by age and size) then delete after N days."""
    policy = build_policy("audit", RetentionTier("standard", 90))["policy"]
    assert [state["name"] for state in policy["states"]] == ["hot", "delete"]
    hot, delete = policy["states"]
    assert hot["actions"] == [{"rollover": {"min_index_age": "1d", "min_primary_shard_size": "30gb"}}]
    assert hot["transitions"] == [{"state_name": "delete", "conditions": {"min_index_age": "90d"}}]
    assert delete["actions"] == [{"delete": {}}]
    assert policy["default_state"] == "hot"


def test_policy_with_repository_snapshots_before_delete():
    """With a repository, the archive state snapshots each index, named after it, then deletes it."""
    tier = RetentionTier("extended", 365, snapshot_repository="audit-archive")
    states = build_policy("audit", tier)["policy"]["states"]
    assert [state["name"] for state in states] == ["hot", "archive"]
    assert states[0]["transitions"][0] == {"state_name": "archive", "conditions": {"min_index_age": "365d"}}
    assert states[1]["actions"] == [
        {"snapshot": {"repository": "audit-archive", "snapshot": "{{ctx.index}}"}},
        {"delete": {}},
    ]
    assert states[1]["transitions"] == []


def test_ism_template_targets_the_data_stream_name():
    """ISM matches data stream backing indices by stream name, so the pattern is the stream itself."""
    policy = build_policy("audit", RetentionTier("extended", 365))["policy"]
    assert policy["ism_template"] == [
        {"index_patterns": ["audit-extended"], "priority": ISM_TEMPLATE_PRIORITY}
    ]
    assert policy_id("audit", "extended") == "audit-extended-retention"


def test_policy_can_act_in_minutes_for_accelerated_tests():
    """delete_after takes any ISM time value, so a retention test can watch deletion in minutes."""
    tier = RetentionTier("standard", 0, rollover_max_age="1m", rollover_max_size="1mb", delete_after="3m")
    hot = build_policy("t", tier)["policy"]["states"][0]
    assert hot["actions"][0]["rollover"] == {"min_index_age": "1m", "min_primary_shard_size": "1mb"}
    assert hot["transitions"][0]["conditions"] == {"min_index_age": "3m"}


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"name": "Standard", "delete_after_days": 90}, id="uppercase-name"),
        pytest.param({"name": "standard", "delete_after_days": 0}, id="zero-days"),
        pytest.param({"name": "standard", "delete_after_days": 90, "rollover_max_size": "30 GB"}, id="size"),
        pytest.param({"name": "standard", "delete_after_days": 90, "rollover_max_age": "1 day"}, id="age"),
        pytest.param(
            {"name": "standard", "delete_after_days": 0, "delete_after": "2 minutes"}, id="delete-after"
        ),
        pytest.param(
            {"name": "standard", "delete_after_days": 9, "snapshot_repository": "a b"}, id="repository"
        ),
    ],
)
def test_invalid_tiers_are_rejected(kwargs):
    """Values ISM would reject later are refused when the tier is built, naming the tier."""
    with pytest.raises(AuditValidationError, match=r"tier|name"):
        RetentionTier(**kwargs)


def test_setup_config_rejects_duplicate_tiers():
    """Two tiers with one name would share a data stream and a policy."""
    with pytest.raises(AuditValidationError, match="unique"):
        SetupConfig(tiers=(RetentionTier("standard", 90), RetentionTier("standard", 30)))
