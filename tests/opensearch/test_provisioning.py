"""What setup is asked to install, checked before it talks to a cluster (SetupConfig)."""

from __future__ import annotations

import pytest

from audit_middleware.errors import AuditValidationError
from audit_middleware.model.alerts import default_rules
from audit_middleware.opensearch.provisioning import SetupConfig, _attached_meanwhile
from audit_middleware.opensearch.retention import default_tiers


def test_the_default_setup_installs_the_four_alerts():
    """Without options, setup manages the monitors of the default rules."""
    config = SetupConfig()
    assert config.alert_rules == default_rules()
    assert config.manage_alerts is True


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param(
            {"alert_webhook": "https://h.example/x", "alert_channel": "c"}, id="webhook-and-channel"
        ),
        pytest.param({"alert_webhook": "hooks.example/x"}, id="webhook-not-http"),
        pytest.param({"manage_alerts": False, "alert_channel": "c"}, id="channel-without-monitors"),
        pytest.param({"alert_rules": default_rules() + default_rules()[:1]}, id="rule-twice"),
        pytest.param({"snapshot_location": "/snapshots"}, id="location-without-repository"),
    ],
)
def test_contradictory_alert_and_archive_settings_are_refused(kwargs):
    """Settings that cannot all hold are refused with a sentence, before any request."""
    with pytest.raises(AuditValidationError):
        SetupConfig(**kwargs)


def test_a_snapshot_location_names_the_tiers_repository():
    """With a location, the tiers' one repository is the one setup registers."""
    config = SetupConfig(tiers=default_tiers(snapshot_repository="arch"), snapshot_location="/snapshots/arch")
    assert config.snapshot_repositories == ("arch",)


@pytest.mark.parametrize(
    ("reason", "benign"),
    [
        pytest.param("This index already has a policy, use the update policy API", True, id="already"),
        pytest.param(
            "Failed to add policy due to: [.opendistro-ism-config/x][[.opendistro-ism-config][0]] "
            "VersionConflictEngineException[[y]: version conflict, document already exists "
            "(current version [1])]",
            True,
            id="raced-ism-template",
        ),
        pytest.param("index [x] is closed", False, id="real-failure"),
    ],
)
def test_a_policy_attached_meanwhile_is_not_a_failure(reason, benign):
    """Adding a policy that ism_template (or another setup) attached first, even mid-write, is fine."""
    assert _attached_meanwhile(reason) is benign
