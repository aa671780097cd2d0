"""The opensearch-py client built from connection settings: auth, SigV4, compression."""

from __future__ import annotations

import sys
import types

import pytest
from opensearchpy import RequestsHttpConnection, Urllib3AWSV4SignerAuth
from opensearchpy.helpers.signer import AWSV4SignerAuth

from audit_middleware.errors import AuditValidationError, MissingDependencyError
from audit_middleware.opensearch.client import build_client
from audit_middleware.opensearch.connection import ConnectionSettings


def test_build_client_uses_basic_auth_and_all_urls():
    """The client gets every URL and a basic Authorization header."""
    settings = ConnectionSettings(urls=("https://a:9200", "https://b:9201"), username="u", password="p")
    client = build_client(settings)
    hosts = client.transport.hosts
    assert [(h["host"], h["port"], h.get("use_ssl")) for h in hosts] == [("a", 9200, True), ("b", 9201, True)]
    connection = client.transport.connection_pool.connections[0]
    assert connection.headers["authorization"] == "Basic dTpw"


def test_sigv4_without_boto3_says_what_to_install(monkeypatch):
    """SigV4 needs boto3, imported only then; its absence is one clear error."""
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(MissingDependencyError, match=r"pip install opensearch-audit-middleware\[aws\]"):
        build_client(ConnectionSettings(urls=("https://search.example",), aws_region="eu-west-1"))


def _fake_boto3(credentials: object) -> types.ModuleType:
    module = types.ModuleType("boto3")

    class Session:
        def get_credentials(self) -> object:
            return credentials

    module.Session = Session  # type: ignore[attr-defined]
    return module


def test_sigv4_signs_with_the_connection_classes_signer(monkeypatch):
    """The urllib3 layer gets the urllib3 signer; the requests layer gets AWSV4SignerAuth."""
    credentials = types.SimpleNamespace(access_key="AKIA", secret_key="secret", token=None)
    monkeypatch.setitem(sys.modules, "boto3", _fake_boto3(credentials))
    settings = ConnectionSettings(
        urls=("https://search.example",), aws_region="eu-west-1", aws_service="aoss"
    )
    urllib3_auth = build_client(settings).transport.connection_pool.connection.http_auth
    assert isinstance(urllib3_auth, Urllib3AWSV4SignerAuth)
    assert (urllib3_auth.signer.region, urllib3_auth.service) == ("eu-west-1", "aoss")
    requests_client = build_client(settings, connection_class=RequestsHttpConnection)
    assert isinstance(requests_client.transport.connection_pool.connection.session.auth, AWSV4SignerAuth)


def test_sigv4_without_aws_credentials_is_clear(monkeypatch):
    """boto3 finding no credentials is reported as such, not as a signing failure later."""
    monkeypatch.setitem(sys.modules, "boto3", _fake_boto3(None))
    with pytest.raises(AuditValidationError, match="no AWS credentials"):
        build_client(ConnectionSettings(urls=("https://search.example",), aws_region="eu-west-1"))
