"""Setup's vocabulary: how a step prints, and the comparison that makes a second run 'unchanged'."""

from __future__ import annotations

import pytest

from audit_middleware.opensearch.steps import Step, StepResult, contains


@pytest.mark.parametrize(
    ("stored", "desired", "expected"),
    [
        pytest.param({"a": 1, "server": "default"}, {"a": 1}, True, id="server-adds-keys"),
        pytest.param({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}, True, id="nested"),
        pytest.param({"a": 1}, {"a": 2}, False, id="value-differs"),
        pytest.param({"a": [1, 2]}, {"a": [1]}, False, id="list-length"),
        pytest.param({"a": [{"x": 1, "y": 2}]}, {"a": [{"x": 1}]}, True, id="list-of-objects"),
        pytest.param({}, {"a": None}, False, id="missing-key"),
        pytest.param({"boost": 1.0}, {"boost": 1}, True, id="number-forms"),
    ],
)
def test_contains_accepts_what_the_server_adds_and_nothing_else(stored, desired, expected):
    """Stored objects may hold more than was sent (defaults), never less or other values."""
    assert contains(stored, desired) is expected


def test_steps_print_as_setup_reports_them():
    """A step prints kind, name and detail; a result adds its status, aligned."""
    step = Step("alert monitor", "audit-alert-mass_deletion", "removed", "its rule is no longer configured")
    assert str(step) == "alert monitor audit-alert-mass_deletion (its rule is no longer configured)"
    assert str(StepResult(step, "removed")) == f"removed    {step}"
