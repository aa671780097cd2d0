"""What capture reads: CaptureSettings' defaults, and deliver() as the door a subclass implements."""

from __future__ import annotations

import pytest

from audit_middleware import record
from audit_middleware.capture import active
from audit_middleware.capture.clientip import ProxyTrust
from audit_middleware.capture.rules import STATE_CHANGING_METHODS, RouteRules
from audit_middleware.capture.settings import CaptureSettings
from audit_middleware.model.event import AuditEvent
from tests.query.conftest import make_event


def test_deliver_must_be_implemented() -> None:
    """The base class has no way out: deliver() raises NotImplementedError naming who implements it."""
    with pytest.raises(NotImplementedError, match=r"audit_middleware\.config"):
        CaptureSettings().deliver(make_event("create"))


def test_defaults_trust_nothing_and_audit_state_changes() -> None:
    """By default no proxy is trusted, no resolver runs, and POST/PUT/PATCH/DELETE are audited."""
    settings = CaptureSettings()
    assert settings.trust == ProxyTrust()
    assert settings.trust.hops == 0
    assert settings.trust.cidrs == ()
    assert settings.actor_resolver is None
    assert settings.tenant_resolver is None
    assert settings.project_resolver is None
    assert isinstance(settings.rules, RouteRules)
    assert settings.rules.methods == frozenset()
    assert settings.audit_methods == STATE_CHANGING_METHODS == frozenset({"POST", "PUT", "PATCH", "DELETE"})
    assert settings.service_name is None
    assert settings.user_agent_limit == 512


def test_each_instance_gets_its_own_rules() -> None:
    """Mutable defaults are made per instance, never shared."""
    assert CaptureSettings().rules is not CaptureSettings().rules


def test_settings_are_keyword_only() -> None:
    """Positional arguments are refused, so a reordered field cannot silently take another's value."""
    with pytest.raises(TypeError):
        CaptureSettings(ProxyTrust())  # type: ignore[misc]


def test_records_leave_capture_through_the_installed_deliver() -> None:
    """record() outside a request hands the finished event to the installed settings' deliver()."""
    delivered: list[AuditEvent] = []

    class Collecting(CaptureSettings):
        def deliver(self, event: AuditEvent, *, strict: bool = False) -> None:
            delivered.append(event)

    active.install(Collecting(service_name="jobs"))
    event = record("restart")
    assert delivered == [event]
    assert event.service == "jobs"
