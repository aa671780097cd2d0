"""Dashboards connection settings: validation, environment, fallback to the OpenSearch connection."""

from __future__ import annotations

import pytest

from audit_middleware.errors import AuditValidationError
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.opensearch.dashboards.settings import DashboardsSettings

OPENSEARCH = ConnectionSettings(urls="https://search.example:9200", username="os-user", password="os-secret")


def test_without_a_url_there_is_nothing_to_install():
    """No --dashboards-url and no AUDIT_DASHBOARDS_URL: no settings, Dashboards is skipped."""
    assert DashboardsSettings.from_env({}, opensearch=OPENSEARCH) is None


def test_credentials_and_tls_default_to_the_opensearch_connection():
    """Dashboards signs in against the same security plugin: the OpenSearch user is the default."""
    settings = DashboardsSettings.from_env(
        {"AUDIT_DASHBOARDS_URL": "https://dash.example:5601/"},
        opensearch=ConnectionSettings(
            urls="https://search.example:9200", username="os-user", password="os-secret", verify_certs=False
        ),
    )
    assert settings is not None
    assert (settings.url, settings.username, settings.password) == (
        "https://dash.example:5601",
        "os-user",
        "os-secret",
    )
    assert settings.verify_certs is False


def test_dashboards_variables_win_over_the_opensearch_ones():
    """AUDIT_DASHBOARDS_* credentials, tenant and TLS settings override; options override those."""
    environ = {
        "AUDIT_DASHBOARDS_URL": "https://ignored.example",
        "AUDIT_DASHBOARDS_USERNAME": "dash",
        "AUDIT_DASHBOARDS_PASSWORD": " pass with spaces ",
        "AUDIT_DASHBOARDS_TENANT": "ops",
        "AUDIT_DASHBOARDS_VERIFY_CERTS": "false",
    }
    settings = DashboardsSettings.from_env(
        environ, url="https://dash.example/_dashboards", tenant="global", opensearch=OPENSEARCH
    )
    assert settings is not None
    assert settings.url == "https://dash.example/_dashboards"
    assert (settings.username, settings.password, settings.tenant) == ("dash", " pass with spaces ", "global")
    assert settings.verify_certs is False
    environ.pop("AUDIT_DASHBOARDS_TENANT")
    assert DashboardsSettings.from_env(environ, opensearch=OPENSEARCH).tenant is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "dash.example:5601"}, "must start with http:// or https://"),
        ({"url": "https://admin:pw@dash.example"}, "AUDIT_DASHBOARDS_USERNAME"),
        ({"url": "https://dash.example/?tenant=x"}, "query string"),
        ({"url": "https://dash.example", "username": "admin"}, "both a username and a password"),
        ({"url": "https://dash.example", "tenant": " "}, "tenant"),
        ({"url": "https://dash.example", "ca_certs": "/no/such/ca.pem"}, "AUDIT_DASHBOARDS_CA_CERTS"),
        ({"url": "https://dash.example", "timeout": 0}, "timeout"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(kwargs, message):
    """Each invalid value raises an error that says what to fix."""
    with pytest.raises(AuditValidationError, match=message):
        DashboardsSettings(**kwargs)


def test_bad_verify_value_names_the_variable():
    """AUDIT_DASHBOARDS_VERIFY_CERTS takes true or false."""
    with pytest.raises(AuditValidationError, match="AUDIT_DASHBOARDS_VERIFY_CERTS"):
        DashboardsSettings.from_env(
            {"AUDIT_DASHBOARDS_URL": "https://d", "AUDIT_DASHBOARDS_VERIFY_CERTS": "maybe"}
        )


def test_the_password_never_shows():
    """repr() and str() mask the password."""
    settings = DashboardsSettings("https://dash.example", username="admin", password="hunter2")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings)
