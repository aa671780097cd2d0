"""The alert rules as data: the four default alerts, their limits, overrides and validation."""

from __future__ import annotations

import pytest

from audit_middleware.errors import AuditValidationError
from audit_middleware.model.alerts import (
    Alert,
    AlertRule,
    apply_overrides,
    default_rules,
    parse_override,
    window_ms,
)


def test_default_rules_are_the_four_alerts_of_the_product():
    """Failed logins (per user, per IP), mass deletion (targets), permission escalation, new tokens."""
    rules = {rule.id: rule for rule in default_rules()}
    assert list(rules) == [
        "failed_logins_per_user",
        "failed_logins_per_ip",
        "mass_deletion",
        "permission_escalation",
        "new_api_token",
    ]
    assert rules["failed_logins_per_user"].group_by == ("user",)
    assert rules["failed_logins_per_ip"].group_by == ("ip",)
    assert (rules["mass_deletion"].measure, rules["mass_deletion"].actions) == ("targets", ("delete",))
    assert rules["permission_escalation"].group_by == ("user", "role")
    assert rules["new_api_token"].group_by == ("user", "event")
    assert rules["new_api_token"].threshold == rules["permission_escalation"].threshold == 1


def test_thresholds_and_windows_are_configurable():
    """default_rules takes the limits of the counting rules."""
    limits = {"failed_login_threshold": 8, "failed_login_window": "1h"}
    rules = {
        rule.id: rule
        for rule in default_rules(**limits, mass_deletion_threshold=100, mass_deletion_window="5m")
    }
    assert (rules["failed_logins_per_ip"].threshold, rules["failed_logins_per_ip"].window) == (8, "1h")
    assert rules["mass_deletion"].condition == "100 targets in 5m"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("mass_deletion=50/5m", ("mass_deletion", 50, "5m"), id="both"),
        pytest.param("mass_deletion=50", ("mass_deletion", 50, None), id="threshold"),
        pytest.param("mass_deletion=/2h", ("mass_deletion", None, "2h"), id="window"),
        pytest.param("new_api_token=off", ("new_api_token", None, "off"), id="off"),
    ],
)
def test_overrides_are_read_from_text(text, expected):
    """RULE=N/WINDOW, RULE=N, RULE=/WINDOW and RULE=off."""
    assert parse_override(text) == expected


@pytest.mark.parametrize(
    "text", ["mass_deletion", "=5", "mass_deletion=five", "mass_deletion=5/5d", "x=5/0m"]
)
def test_bad_overrides_are_clear_errors(text):
    """Anything else says what it expected."""
    with pytest.raises(AuditValidationError):
        parse_override(text)


def test_overrides_change_or_drop_rules_and_name_unknown_ones():
    """An override replaces a rule's limits or drops it; an unknown rule id is refused, listing the rules."""
    rules = apply_overrides(default_rules(), [("mass_deletion", 3, None), ("new_api_token", None, "off")])
    by_id = {rule.id: rule for rule in rules}
    assert "new_api_token" not in by_id
    assert (by_id["mass_deletion"].threshold, by_id["mass_deletion"].window) == (3, "10m")
    with pytest.raises(AuditValidationError, match=r"no alert rule 'nope'.*mass_deletion"):
        apply_overrides(default_rules(), [("nope", 1, None)])


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"threshold": 0}, id="threshold-0"),
        pytest.param({"threshold": True}, id="threshold-bool"),
        pytest.param({"window": "10d"}, id="window-days"),
        pytest.param({"group_by": ("user", "user")}, id="twice"),
        pytest.param({"group_by": ("country",)}, id="unknown-key"),
        pytest.param({"actions": ()}, id="no-action"),
        pytest.param({"measure": "bytes"}, id="measure"),
        pytest.param({"severity": "9"}, id="severity"),
        pytest.param({"id": "Has Spaces"}, id="id"),
    ],
)
def test_invalid_rules_are_refused(changes):
    """A rule that cannot mean anything is refused when it is made, not when it runs."""
    base = {
        "id": "r",
        "title": "R",
        "actions": ("login",),
        "group_by": ("user",),
        "threshold": 1,
        "window": "5m",
    }
    with pytest.raises(AuditValidationError):
        AlertRule(**{**base, **changes})


def test_window_units_are_minutes_and_hours():
    """10m is 600,000 ms and 2h is 7,200,000 ms."""
    assert (window_ms("10m"), window_ms("2h")) == (600_000, 7_200_000)


def test_an_alert_describes_itself_and_serialises():
    """describe() names rule, tenant, keys, value and limits; to_json() is what a webhook receives."""
    alert = Alert(
        "a1", "failed_logins_per_user", "acme", {"user": "ann@x.com"}, 6.0, 5, "10m", "ACTIVE", 1, 2,
        title="Multiple failed logins for one account", event_ids=("e1",),
    )  # fmt: skip
    assert alert.describe() == (
        "Multiple failed logins for one account [acme] user=ann@x.com: 6 (>= 5 in 10m), ACTIVE"
    )
    assert alert.to_json()["key"] == {"user": "ann@x.com"}
    assert alert.to_json()["event_ids"] == ["e1"]
