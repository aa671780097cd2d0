"""Connection settings from the environment, and the client built from them."""

from __future__ import annotations

import pytest

from audit_middleware import env
from audit_middleware.errors import AuditValidationError
from audit_middleware.opensearch.connection import ConnectionSettings, parse_urls

# --- connection -----------------------------------------------------------------------------


def test_from_env_reads_every_variable(tmp_path):
    """All AUDIT_OPENSEARCH_* variables end up in the settings."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = ConnectionSettings.from_env(
        {
            "AUDIT_OPENSEARCH_URL": "https://a.example:9200, https://b.example:9200",
            "AUDIT_OPENSEARCH_USERNAME": "auditor",
            "AUDIT_OPENSEARCH_PASSWORD": "pa ss",
            "AUDIT_OPENSEARCH_CA_CERTS": str(ca),
            "AUDIT_OPENSEARCH_VERIFY_CERTS": "false",
            "AUDIT_OPENSEARCH_TIMEOUT": "2.5",
            "AUDIT_OPENSEARCH_PREFIX": "acme-audit",
        }
    )
    assert settings.urls == ("https://a.example:9200", "https://b.example:9200")
    assert (settings.username, settings.password) == ("auditor", "pa ss")
    assert (settings.ca_certs, settings.verify_certs, settings.timeout) == (str(ca), False, 2.5)
    assert settings.prefix == "acme-audit"


def test_from_env_without_url_uses_the_default():
    """With nothing set, settings point at the local default and OpenSearch counts as not configured."""
    assert ConnectionSettings.from_env({}).urls == ("http://127.0.0.1:9200",)
    assert ConnectionSettings.from_env({}, default_url="https://x:9200").urls == ("https://x:9200",)
    assert env.opensearch_configured({}) is False
    assert env.opensearch_configured({"AUDIT_OPENSEARCH_URL": "http://h:9200"}) is True


def test_from_env_reads_aws_signing():
    """Region and service select SigV4 signing; aoss is accepted for Serverless."""
    settings = ConnectionSettings.from_env(
        {"AUDIT_OPENSEARCH_AWS_REGION": "eu-west-1", "AUDIT_OPENSEARCH_AWS_SERVICE": "aoss"}
    )
    assert (settings.aws_region, settings.aws_service) == ("eu-west-1", "aoss")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"AUDIT_OPENSEARCH_VERIFY_CERTS": "maybe"}, "VERIFY_CERTS", id="verify"),
        pytest.param({"AUDIT_OPENSEARCH_TIMEOUT": "soon"}, "TIMEOUT", id="timeout"),
        pytest.param({"AUDIT_OPENSEARCH_AWS_SERVICE": "s3"}, "AWS_SERVICE", id="service"),
        pytest.param({"AUDIT_OPENSEARCH_USERNAME": "u"}, "password", id="user-without-password"),
        pytest.param({"AUDIT_OPENSEARCH_CA_CERTS": "/nonexistent/ca.pem"}, "CA bundle", id="ca-missing"),
        pytest.param({"AUDIT_OPENSEARCH_PREFIX": "Audit"}, "prefix", id="prefix"),
        pytest.param(
            {
                "AUDIT_OPENSEARCH_USERNAME": "u",
                "AUDIT_OPENSEARCH_PASSWORD": "p",
                "AUDIT_OPENSEARCH_AWS_REGION": "x",
            },
            "not both",
            id="basic-and-sigv4",
        ),
    ],
)
def test_bad_environment_values_give_clear_errors(env, message):
    """Each bad variable is reported by name (or by what is wrong), not as a later failure."""
    with pytest.raises(AuditValidationError, match=message):
        ConnectionSettings.from_env(env)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("ftp://search.example", "http:// or https://", id="scheme"),
        pytest.param("search.example:9200", "http:// or https://", id="no-scheme"),
        pytest.param("http://:9200", "no host", id="no-host"),
        pytest.param("https://admin:secret@search.example", "credentials", id="credentials"),
        pytest.param("http://search.example:99999", "malformed", id="port"),
        pytest.param("http://search.example/?x=1", "query", id="query"),
        pytest.param(" , ", "no OpenSearch URL", id="empty"),
    ],
)
def test_invalid_urls_are_rejected(url, message):
    """URLs without http(s), a host, or with credentials or a query are refused with the reason."""
    with pytest.raises(AuditValidationError, match=message):
        parse_urls(url)


def test_credentials_in_url_are_not_echoed():
    """The error about credentials in a URL does not repeat the password."""
    with pytest.raises(AuditValidationError) as caught:
        parse_urls("https://admin:s3cret@search.example")
    assert "s3cret" not in str(caught.value)


def test_repr_masks_the_password():
    """Neither repr() nor str() of the settings shows the password."""
    settings = ConnectionSettings(urls=("https://h:9200",), username="auditor", password="s3cret")
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings)
    assert "password='***'" in repr(settings)
