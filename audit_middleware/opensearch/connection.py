"""Where OpenSearch is and how to authenticate: settings, read from the environment, and a client.

Environment variables (all optional; ``configured_in_env()`` tells whether the URL is set):

==================================  ==========================================================
``AUDIT_OPENSEARCH_URL``            one URL or several, comma-separated (``https://a:9200,...``)
``AUDIT_OPENSEARCH_USERNAME``       basic auth user
``AUDIT_OPENSEARCH_PASSWORD``       basic auth password
``AUDIT_OPENSEARCH_CA_CERTS``       CA bundle (PEM) to verify the server's certificate
``AUDIT_OPENSEARCH_VERIFY_CERTS``   ``true`` (default) or ``false``
``AUDIT_OPENSEARCH_AWS_REGION``     sign requests with AWS SigV4 for this region (needs boto3)
``AUDIT_OPENSEARCH_AWS_SERVICE``    ``es`` (Amazon OpenSearch Service, default) or ``aoss`` (Serverless)
``AUDIT_OPENSEARCH_TIMEOUT``        request timeout in seconds (default 10)
``AUDIT_OPENSEARCH_PREFIX``         name prefix of templates, policies and data streams (default ``audit``)
==================================  ==========================================================
"""

from __future__ import annotations

import gzip
import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from opensearchpy import OpenSearch, RequestsHttpConnection, Urllib3AWSV4SignerAuth, Urllib3HttpConnection
from opensearchpy.helpers.signer import AWSV4SignerAuth

from audit_middleware.errors import AuditValidationError, MissingDependencyError
from audit_middleware.opensearch.serializer import OrjsonSerializer
from audit_middleware.opensearch.tiers import DEFAULT_PREFIX, validate_name

DEFAULT_URL = "http://127.0.0.1:9200"
DEFAULT_TIMEOUT = 10.0

ENV_URL = "AUDIT_OPENSEARCH_URL"
ENV_USERNAME = "AUDIT_OPENSEARCH_USERNAME"
ENV_PASSWORD = "AUDIT_OPENSEARCH_PASSWORD"  # noqa: S105 - the variable's name, not a password
ENV_CA_CERTS = "AUDIT_OPENSEARCH_CA_CERTS"
ENV_VERIFY_CERTS = "AUDIT_OPENSEARCH_VERIFY_CERTS"
ENV_AWS_REGION = "AUDIT_OPENSEARCH_AWS_REGION"
ENV_AWS_SERVICE = "AUDIT_OPENSEARCH_AWS_SERVICE"
ENV_TIMEOUT = "AUDIT_OPENSEARCH_TIMEOUT"
ENV_PREFIX = "AUDIT_OPENSEARCH_PREFIX"

AwsService = Literal["es", "aoss"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def parse_urls(value: str | Sequence[str]) -> tuple[str, ...]:
    """Split and check OpenSearch URLs; raises ``AuditValidationError`` naming the bad one.

    >>> parse_urls("https://a.example:9200, https://b.example:9200")
    ('https://a.example:9200', 'https://b.example:9200')
    """
    parts = value.split(",") if isinstance(value, str) else list(value)
    urls = tuple(part.strip() for part in parts if part.strip())
    if not urls:
        raise AuditValidationError(
            "no OpenSearch URL given (expected e.g. https://opensearch.example.com:9200)"
        )
    for url in urls:
        _check_url(url)
    return urls


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise AuditValidationError(f"OpenSearch URL {url!r} is malformed: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise AuditValidationError(
            f"OpenSearch URL {url!r} must start with http:// or https:// (e.g. https://opensearch.example.com:9200)"
        )
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and error messages.
        raise AuditValidationError(
            f"OpenSearch URL for host {parts.hostname!r} contains credentials: "
            f"set {ENV_USERNAME} and {ENV_PASSWORD} (or username/password) instead"
        )
    if not parts.hostname:
        raise AuditValidationError(f"OpenSearch URL {url!r} has no host name")
    if parts.query or parts.fragment:
        raise AuditValidationError(f"OpenSearch URL {url!r} must not have a query string or fragment")


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise AuditValidationError(f"{name} must be true or false, not {value!r}")


@dataclass(frozen=True, repr=False)
class ConnectionSettings:
    """How to reach OpenSearch. Invalid combinations raise ``AuditValidationError``.

    The password never appears in ``repr()`` or ``str()``.

    >>> settings = ConnectionSettings(urls="https://search.example:9200", username="audit", password="s3cret")
    >>> "s3cret" in repr(settings), settings.urls
    (False, ('https://search.example:9200',))
    """

    urls: tuple[str, ...] = (DEFAULT_URL,)
    username: str | None = None
    password: str | None = None
    verify_certs: bool = True
    ca_certs: str | None = None
    aws_region: str | None = None
    aws_service: AwsService = "es"
    timeout: float = DEFAULT_TIMEOUT
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        # Accept a plain string or list for urls, keep a tuple so the settings stay hashable.
        object.__setattr__(self, "urls", parse_urls(self.urls))
        validate_name(self.prefix, "prefix")
        if (self.username is None) != (self.password is None):
            raise AuditValidationError(
                f"basic auth needs both a username and a password ({ENV_USERNAME} / {ENV_PASSWORD})"
            )
        if self.aws_region is not None and self.username is not None:
            raise AuditValidationError("choose either basic auth or AWS SigV4 signing, not both")
        if self.aws_service not in ("es", "aoss"):
            raise AuditValidationError(f"aws_service must be 'es' or 'aoss', not {self.aws_service!r}")
        if self.ca_certs is not None and not os.path.isfile(self.ca_certs):
            raise AuditValidationError(f"CA bundle {self.ca_certs!r} ({ENV_CA_CERTS}) is not a readable file")
        if not self.timeout > 0:
            raise AuditValidationError(f"timeout must be a positive number of seconds, not {self.timeout!r}")

    def __repr__(self) -> str:
        password = None if self.password is None else "***"
        return (
            f"ConnectionSettings(urls={self.urls!r}, username={self.username!r}, password={password!r}, "
            f"verify_certs={self.verify_certs!r}, ca_certs={self.ca_certs!r}, "
            f"aws_region={self.aws_region!r}, "
            f"aws_service={self.aws_service!r}, timeout={self.timeout!r}, prefix={self.prefix!r})"
        )

    __str__ = __repr__

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, default_url: str = DEFAULT_URL
    ) -> ConnectionSettings:
        """Settings from ``AUDIT_OPENSEARCH_*`` variables (see the module docstring).

        Without ``AUDIT_OPENSEARCH_URL`` the URL is ``default_url``; use
        ``configured_in_env()`` to tell whether OpenSearch was configured at all.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        url = get(ENV_URL) or default_url
        verify = get(ENV_VERIFY_CERTS)
        timeout = get(ENV_TIMEOUT)
        try:
            timeout_seconds = DEFAULT_TIMEOUT if timeout is None else float(timeout)
        except ValueError:
            raise AuditValidationError(
                f"{ENV_TIMEOUT} must be a number of seconds, not {timeout!r}"
            ) from None
        service = get(ENV_AWS_SERVICE) or "es"
        if service not in ("es", "aoss"):
            raise AuditValidationError(f"{ENV_AWS_SERVICE} must be 'es' or 'aoss', not {service!r}")
        return cls(
            urls=parse_urls(url),
            username=get(ENV_USERNAME),
            # A password may legitimately have surrounding spaces: take it as given.
            password=env.get(ENV_PASSWORD) or None,
            verify_certs=True if verify is None else _parse_bool(ENV_VERIFY_CERTS, verify),
            ca_certs=get(ENV_CA_CERTS),
            aws_region=get(ENV_AWS_REGION),
            aws_service="aoss" if service == "aoss" else "es",
            timeout=timeout_seconds,
            prefix=get(ENV_PREFIX) or DEFAULT_PREFIX,
        )


def configured_in_env(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``AUDIT_OPENSEARCH_URL`` is set, i.e. the user asked for OpenSearch."""
    env = os.environ if environ is None else environ
    return bool(env.get(ENV_URL, "").strip())


def _sigv4_auth(settings: ConnectionSettings, connection_class: type[Any] | None) -> Any:
    try:
        # Imported only here: boto3 is needed by SigV4 users alone.
        boto3 = importlib.import_module("boto3")
    except ImportError as exc:
        raise MissingDependencyError(
            f"AWS SigV4 signing ({ENV_AWS_REGION}={settings.aws_region}) needs boto3: pip install boto3"
        ) from exc
    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise AuditValidationError(
            "AWS SigV4 signing is on but boto3 found no AWS credentials "
            "(environment variables, ~/.aws/credentials or an instance/task role)"
        )
    # Each HTTP layer of opensearch-py has its own signer class.
    if connection_class is not None and issubclass(connection_class, RequestsHttpConnection):
        return AWSV4SignerAuth(credentials, settings.aws_region, settings.aws_service)
    return Urllib3AWSV4SignerAuth(credentials, settings.aws_region, settings.aws_service)


class FastGzipConnection(Urllib3HttpConnection):
    """urllib3 connection compressing request bodies at gzip level 1, not 9.

    Bulk bodies compress almost as well at level 1 for a seventh of the CPU (measured:
    3 vs 22 µs per ~1.2 KB document), and that CPU is taken from the host app's cores.
    """

    def _gzip_compress(self, body: Any) -> bytes:
        return gzip.compress(body if isinstance(body, bytes) else bytes(body), compresslevel=1)


def build_client(
    settings: ConnectionSettings, connection_class: type[Any] | None = None, **overrides: Any
) -> OpenSearch:
    """An ``opensearchpy.OpenSearch`` client for ``settings``.

    Request bodies are gzip-compressed and JSON goes through orjson; ``overrides`` are
    passed to the client as they are (the shipper sets ``max_retries=0``: it retries
    itself, per bulk item).

    ``connection_class`` picks the HTTP layer (default urllib3); tests that inject
    faults with ``responses`` pass ``opensearchpy.RequestsHttpConnection``.
    """
    kwargs: dict[str, Any] = {
        "hosts": list(settings.urls),
        "timeout": settings.timeout,
        "verify_certs": settings.verify_certs,
        "http_compress": True,
        "serializer": OrjsonSerializer(),
    }
    if settings.ca_certs is not None:
        kwargs["ca_certs"] = settings.ca_certs
    kwargs["connection_class"] = connection_class or FastGzipConnection
    if settings.aws_region is not None:
        kwargs["http_auth"] = _sigv4_auth(settings, connection_class)
    elif settings.username is not None and settings.password is not None:
        kwargs["http_auth"] = (settings.username, settings.password)
    kwargs.update(overrides)
    return OpenSearch(**kwargs)
